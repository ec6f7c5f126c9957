"""Bad input: never a crash, the book's exception (or a clear one), caller's arrays untouched.

Every case runs in a child Python process (``_helpers.run_snippet``), so a segfault or an
abort inside a kernel is one failed test, not a dead test run.  The child runs the same call
on bpfast and on the book's code (bpfast.reference), on fresh copies of the same inputs, and
reports for each: the exception (class and its bases), its message, which of the caller's
variables changed, and whether the results agree.  The test then requires:

* the process exits normally;
* ``"same"`` cases: where the book raises, bpfast raises an instance of the book's exception
  class; where the book returns, bpfast returns the same result and changes the same
  variables (the book's Relu.backward writes into dout);
* other cases name the exception bpfast raises where the book does not (its deliberate
  deviations: negative labels, labels of another batch size); the message is checked;
* when bpfast raises, none of the caller's arrays changed.

To keep the run short, the selected cases run the first time a test needs a result, in
groups of GROUP_SIZE cases per process and two processes at a time.  Each case prints its
report as soon as it is done; if a process dies, the first case without a report is the one
that crashed (its test fails with the return code and stderr) and the rest of its group runs
again in a new process, so every other case still gets its own verdict.
"""

import json
import os
import re
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from _helpers import run_snippet

DRIVER = textwrap.dedent(
    r'''
    import copy, json, sys, types, warnings
    import numpy as np
    import bpfast
    import bpfast.functions
    import bpfast.layers
    import bpfast.reference
    import bpfast.reference.functions
    from bpfast._kernels import affine as kaffine, relu as krelu, runtime as kruntime
    from bpfast._kernels import sigmoid as ksigmoid, softmax_with_loss as ksoftmax

    def same(a, b):
        if type(a) is not type(b):
            return False
        if isinstance(a, np.ndarray):
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if a.dtype.kind == "O":
                return all(same(x, y) for x, y in zip(a.flat, b.flat))
            if a.tobytes() == b.tobytes():
                return True
            return a.dtype.kind in "fc" and bool(np.array_equal(a, b, equal_nan=True))
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        try:
            return bool(a == b) or (a != a and b != b)
        except Exception:
            return repr(a) == repr(b)

    def close(a, b):
        if same(a, b):
            return True
        try:
            a, b = np.asarray(a), np.asarray(b)
            return (a.dtype == b.dtype and a.shape == b.shape
                    and bool(np.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)))
        except Exception:
            return False

    def watched(ns):
        return {k: v for k, v in ns.items()
                if not k.startswith("_") and k not in ("np", "L", "F", "K")
                and not isinstance(v, (type, types.ModuleType))
                and type(v).__module__.split(".")[0] not in ("bpfast",)}

    def run(layers, functions, SETUP, CALL):
        ns = {"np": np, "L": layers, "F": functions, "K": types.SimpleNamespace(
            affine=kaffine, relu=krelu, sigmoid=ksigmoid, softmax=ksoftmax, runtime=kruntime)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                exec(SETUP, ns)
        before = {k: copy.deepcopy(v) for k, v in watched(ns).items()}
        result = exc = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with np.errstate(all="ignore"):
                    result = eval(CALL, ns)
        except Exception as e:
            exc = e
        changed = sorted(k for k, v in before.items() if not same(v, ns.get(k)))
        report = {
            "exc": None if exc is None else [c.__name__ for c in type(exc).__mro__],
            "msg": "" if exc is None else str(exc),
            "changed": changed,
        }
        return report, result

    for case_id, setup, call in CASES:
        fast, fast_result = run(bpfast.layers, bpfast.functions, setup, call)
        book, book_result = run(bpfast.reference, bpfast.reference.functions, setup, call)
        both_ok = fast["exc"] is None and book["exc"] is None
        print(json.dumps({"id": case_id, "fast": fast, "book": book,
                          "same_result": close(fast_result, book_result) if both_ok else None}),
              flush=True)
    '''
)

# ------------------------------------------------------------------------------- the cases
# (setup, call, expect): expect is "same" (differential), "ok" (bpfast returns), or the
# name of the exception class bpfast must raise; a 4th item is a regex for its message.

LAYER = {
    "Relu.forward": ("layer = L.Relu()", "layer.forward(v)"),
    "Relu.backward": ("layer = L.Relu(); layer.forward(np.array([[-1.0, 2.0], [3.0, -4.0]]))",
                      "layer.backward(v)"),
    "Sigmoid.forward": ("layer = L.Sigmoid()", "layer.forward(v)"),
    "Sigmoid.backward": ("layer = L.Sigmoid(); layer.forward(np.array([[-1.0, 2.0], [3.0, 0]]))",
                         "layer.backward(v)"),
    "Affine.forward": ("W = np.ones((2, 2)); b = np.zeros(2); layer = L.Affine(W, b)",
                       "layer.forward(v)"),
    "Affine.backward": ("W = np.ones((2, 2)); b = np.zeros(2); layer = L.Affine(W, b); "
                        "x = np.ones((2, 2)); layer.forward(x)", "layer.backward(v)"),
    "SoftmaxWithLoss.forward.x": ("layer = L.SoftmaxWithLoss(); t = np.array([1, 0])",
                                  "layer.forward(v, t)"),
    "SoftmaxWithLoss.forward.t": ("layer = L.SoftmaxWithLoss(); "
                                  "x = np.array([[1.0, 2.0], [0.5, -1.0]])",
                                  "layer.forward(x, v)"),
    "SoftmaxWithLoss.backward": ("layer = L.SoftmaxWithLoss(); "
                                 "layer.forward(np.array([[1.0, 2.0], [0.5, -1.0]]), "
                                 "np.array([1, 0]))", "layer.backward(v)"),
    "softmax": ("pass", "F.softmax(v)"),
    "sigmoid": ("pass", "F.sigmoid(v)"),
}

BAD_VALUES = {
    "None": "None",
    "string": "'abc'",
    "bytes": "b'ab'",
    "complex": "np.array([[1 + 2j, -1j], [3.0, -4.0]])",
    "object": "np.array([[1.0, -2.0], [3.0, 4.0]], dtype=object)",
    "object_with_None": "np.array([[1.0, None], [3.0, 4.0]], dtype=object)",
    "string_array": "np.array([['a', 'b'], ['c', 'd']])",
    "list": "[[1.0, -2.0], [3.0, 4.0]]",
    "scalar": "2.5",
    "numpy_scalar": "np.float64(2.5)",
    "0d": "np.array(2.5)",
    "3d": "np.ones((2, 2, 2))",
}

CASES = {
    f"{slot}-{bad}": (f"{setup}; v = {value}", call, "same")
    for slot, (setup, call) in LAYER.items()
    for bad, value in BAD_VALUES.items()
}

AFFINE = "W = np.ones((4, 3)); b = np.zeros(3); layer = L.Affine(W, b)"
AFFINE_FWD = AFFINE + "; x = np.ones((2, 4)); layer.forward(x)"
SOFTMAX = "layer = L.SoftmaxWithLoss(); x = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, -1.0]])"
SOFTMAX_FWD = SOFTMAX + "; layer.forward(x, np.array([2, 0]))"
RELU_FWD = "layer = L.Relu(); layer.forward(np.array([[-1.0, 2.0], [3.0, -4.0]]))"
SIGMOID_FWD = "layer = L.Sigmoid(); layer.forward(np.array([[-1.0, 2.0], [3.0, -4.0]]))"
for dt in ("np.float32", "np.float64"):
    sfx = dt.split(".")[1]
    CASES.update({
        # Affine: shapes that do not fit
        f"Affine.forward-features-{sfx}": (AFFINE + f"; x = np.ones((2, 5), {dt})",
                                           "layer.forward(x)", "same"),
        f"Affine.forward-1d-{sfx}": (AFFINE + f"; x = np.ones(4, {dt})", "layer.forward(x)",
                                     "same"),
        f"Affine.forward-empty-batch-{sfx}": (AFFINE + f"; x = np.ones((0, 4), {dt})",
                                              "layer.forward(x)", "same"),
        f"Affine.forward-bias-length-{sfx}": (
            f"W = np.ones((4, 3), {dt}); b = np.zeros(2, {dt}); layer = L.Affine(W, b); "
            f"x = np.ones((2, 4), {dt})", "layer.forward(x)", "same"),
        f"Affine.forward-W-1d-{sfx}": (
            f"W = np.ones(4, {dt}); b = np.zeros(3, {dt}); layer = L.Affine(W, b); "
            f"x = np.ones((2, 4), {dt})", "layer.forward(x)", "same"),
        f"Affine.forward-W-3d-{sfx}": (
            f"W = np.ones((4, 3, 2), {dt}); b = np.zeros(3, {dt}); layer = L.Affine(W, b); "
            f"x = np.ones((2, 4), {dt})", "layer.forward(x)", "same"),
        f"Affine.forward-W-None-{sfx}": (
            f"layer = L.Affine(None, np.zeros(3, {dt})); x = np.ones((2, 4), {dt})",
            "layer.forward(x)", "same"),
        f"Affine.backward-outputs-{sfx}": (AFFINE_FWD + f"; d = np.ones((2, 5), {dt})",
                                           "layer.backward(d)", "same"),
        f"Affine.backward-batch-{sfx}": (AFFINE_FWD + f"; d = np.ones((3, 3), {dt})",
                                         "layer.backward(d)", "same"),
        f"Affine.backward-1d-{sfx}": (AFFINE_FWD + f"; d = np.ones(3, {dt})",
                                      "layer.backward(d)", "same"),
        f"Affine.backward-before-forward-{sfx}": (AFFINE + f"; d = np.ones((2, 3), {dt})",
                                                  "layer.backward(d)", "same"),
        # Relu / Sigmoid
        f"Relu.backward-shape-{sfx}": (RELU_FWD + f"; d = np.ones((3, 3), {dt})",
                                       "layer.backward(d)", "same"),
        f"Relu.backward-fewer-dims-{sfx}": (RELU_FWD + f"; d = np.ones(2, {dt})",
                                            "layer.backward(d)", "same"),
        f"Relu.backward-before-forward-{sfx}": (f"layer = L.Relu(); d = np.ones((2, 2), {dt})",
                                                "layer.backward(d)", "same"),
        f"Relu.backward-readonly-{sfx}": (
            RELU_FWD + f"; d = np.ones((2, 2), {dt}); d.flags.writeable = False",
            "layer.backward(d)", "ok"),
        f"Sigmoid.backward-shape-{sfx}": (SIGMOID_FWD + f"; d = np.ones((3, 3), {dt})",
                                          "layer.backward(d)", "same"),
        f"Sigmoid.backward-before-forward-{sfx}": (
            f"layer = L.Sigmoid(); d = np.ones((2, 2), {dt})", "layer.backward(d)", "same"),
        # SoftmaxWithLoss: labels and targets that do not fit
        f"SoftmaxWithLoss.labels-too-large-{sfx}": (SOFTMAX + "; t = np.array([0, 3])",
                                                    "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.labels-uint8-too-large-{sfx}": (
            SOFTMAX + "; t = np.array([255, 0], np.uint8)", "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.labels-uint64-huge-{sfx}": (
            SOFTMAX + "; t = np.array([2**63 + 5, 0], np.uint64)", "layer.forward(x, t)",
            "same"),
        f"SoftmaxWithLoss.labels-negative-{sfx}": (
            SOFTMAX + "; t = np.array([0, -1])", "layer.forward(x, t)", "IndexError",
            "out of range"),
        f"SoftmaxWithLoss.labels-negative-int8-{sfx}": (
            SOFTMAX + "; t = np.array([-3, 1], np.int8)", "layer.forward(x, t)", "IndexError",
            "out of range"),
        f"SoftmaxWithLoss.labels-float-{sfx}": (SOFTMAX + f"; t = np.array([0.0, 1.0], {dt})",
                                                "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.labels-bool-{sfx}": (SOFTMAX + "; t = np.array([True, False])",
                                               "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.labels-batch-larger-{sfx}": (SOFTMAX + "; t = np.array([0, 1, 2])",
                                                       "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.labels-batch-one-{sfx}": (
            SOFTMAX + "; t = np.array([1])", "layer.forward(x, t)", "IndexError", r"\(2, 3\)"),
        f"SoftmaxWithLoss.labels-column-too-large-{sfx}": (
            SOFTMAX + "; t = np.array([[0], [3]])", "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.onehot-too-wide-{sfx}": (SOFTMAX + f"; t = np.eye(4, dtype={dt})[:2]",
                                                   "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.onehot-batch-{sfx}": (SOFTMAX + f"; t = np.eye(3, dtype={dt})",
                                                "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.onehot-transposed-{sfx}": (
            SOFTMAX + f"; t = np.eye(3, dtype={dt})[[2, 0]].T.copy()", "layer.forward(x, t)",
            "same"),
        f"SoftmaxWithLoss.single-column-{sfx}": (
            f"layer = L.SoftmaxWithLoss(); x = np.ones((2, 1), {dt}); t = np.array([0, 0])",
            "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.x-3d-{sfx}": (
            f"layer = L.SoftmaxWithLoss(); x = np.ones((2, 3, 4), {dt}); t = np.array([0, 1])",
            "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.x-1d-label-too-large-{sfx}": (
            f"layer = L.SoftmaxWithLoss(); x = np.ones(3, {dt}); t = np.array(3)",
            "layer.forward(x, t)", "same"),
        f"SoftmaxWithLoss.backward-before-forward-{sfx}": ("layer = L.SoftmaxWithLoss()",
                                                           "layer.backward()", "same"),
        # A forward that raises leaves bpfast's layer as it was (the book has already
        # replaced t and y, so its backward then fails).
        f"SoftmaxWithLoss.backward-after-bad-forward-{sfx}": (
            SOFTMAX_FWD + "; t = np.array([0, 7])\ntry:\n    layer.forward(x, t)\n"
            "except IndexError:\n    pass", "layer.backward()", "ok"),
    })

# The kernels check what they index with, with the GIL, before any nogil loop.
KERNEL_CASES = {
    "relu_forward-out": ("x = np.ones(5); o = np.empty(4); m = np.empty(5, np.uint8)",
                         "K.relu.relu_forward(x, o, m)", "ValueError"),
    "relu_forward-mask": ("x = np.ones(5); o = np.empty(5); m = np.empty(3, np.uint8)",
                          "K.relu.relu_forward(x, o, m)", "ValueError"),
    "relu_backward-mask": ("d = np.ones(5); m = np.zeros(2, np.uint8); o = np.empty(5)",
                           "K.relu.relu_backward(d, m, o)", "ValueError"),
    "relu_forward-None": ("o = np.empty(4); m = np.empty(4, np.uint8)",
                          "K.relu.relu_forward(None, o, m)", "TypeError"),
    "relu_forward-strided": ("x = np.ones(10)[::2]; o = np.empty(5); m = np.empty(5, np.uint8)",
                             "K.relu.relu_forward(x, o, m)", "ValueError"),
    "relu_forward-readonly-out": (
        "x = np.ones(5); o = np.empty(5); o.flags.writeable = False; "
        "m = np.empty(5, np.uint8)", "K.relu.relu_forward(x, o, m)", "ValueError"),
    "relu_forward-mixed-dtypes": (
        "x = np.ones(5); o = np.empty(5, np.float32); m = np.empty(5, np.uint8)",
        "K.relu.relu_forward(x, o, m)", "ValueError"),
    "sigmoid_forward-out": ("x = np.ones(5); o = np.empty(6)",
                            "K.sigmoid.sigmoid_forward(x, o)", "ValueError"),
    "sigmoid_backward-out": ("d = np.ones(5); y = np.ones(4); o = np.empty(5)",
                             "K.sigmoid.sigmoid_backward(d, y, o)", "ValueError"),
    "bias_add-b": ("o = np.ones((3, 4)); b = np.ones(5)", "K.affine.bias_add(o, b)",
                   "ValueError"),
    "column_sum-out": ("x = np.ones((3, 4)); o = np.empty(3)", "K.affine.column_sum(x, o)",
                       "ValueError"),
    "softmax_forward-y": ("x = np.ones((3, 4)); y = np.empty((3, 5))",
                          "K.softmax.softmax_forward(x, y)", "ValueError"),
    "xent_forward-labels-length": (
        "x = np.ones((3, 4)); t = np.zeros(2, np.int_); y = np.empty((3, 4))",
        "K.softmax.softmax_xent_forward(x, t, y)", "ValueError"),
    "xent_forward-label-range": (
        "x = np.ones((3, 4)); t = np.array([0, 4, 1], np.int_); y = np.empty((3, 4))",
        "K.softmax.softmax_xent_forward(x, t, y)", "IndexError"),
    "xent_forward-negative-label": (
        "x = np.ones((3, 4)); t = np.array([0, -9999999, 1], np.intc); y = np.empty((3, 4))",
        "K.softmax.softmax_xent_forward(x, t, y)", "IndexError"),
    "xent_forward-empty": ("x = np.ones((0, 4)); t = np.zeros(0, np.int_); y = np.empty((0, 4))",
                           "K.softmax.softmax_xent_forward(x, t, y)", "ValueError"),
    "xent_forward-y": ("x = np.ones((3, 4)); t = np.zeros(3, np.int_); y = np.empty((3, 3))",
                       "K.softmax.softmax_xent_forward(x, t, y)", "ValueError"),
    "xent_forward_onehot-t": (
        "x = np.ones((3, 4)); t = np.zeros((3, 5)); y = np.empty((3, 4))",
        "K.softmax.softmax_xent_forward_onehot(x, t, y)", "ValueError"),
    "xent_backward-label-range": (
        "y = np.ones((3, 4)); t = np.array([0, 1, 400], np.int_); o = np.empty((3, 4))",
        "K.softmax.softmax_xent_backward(y, t, o)", "IndexError"),
    "xent_backward-out": (
        "y = np.ones((3, 4)); t = np.zeros(3, np.int_); o = np.empty((2, 4))",
        "K.softmax.softmax_xent_backward(y, t, o)", "ValueError"),
    "xent_backward_onehot-t": (
        "y = np.ones((3, 4)); t = np.zeros((4, 4)); o = np.empty((3, 4))",
        "K.softmax.softmax_xent_backward_onehot(y, t, o)", "ValueError"),
    "vec_exp-out": ("x = np.ones(3); o = np.empty(2)", "K.runtime.vec_exp(x, o)", "ValueError"),
}
CASES.update({f"kernel-{k}": v for k, v in KERNEL_CASES.items()})

GROUP_SIZE = 12  # cases per process; a crash re-runs the rest of its group one by one


def _run_cases(case_ids):
    """{case_id: (returncode, report or None, stderr)}, each case isolated on a crash.

    The cases of a group run one after the other in one process, each printing its report
    as soon as it is done.  If the process dies, the first case without a report is the one
    that killed it (it gets the return code and stderr); the cases after it run again in a
    new process.
    """
    cases = [(c, *CASES[c][:2]) for c in case_ids]
    code = "CASES = " + repr(cases) + "\n" + DRIVER
    rc, out, err = run_snippet(code)
    reports = {}
    for line in out.splitlines():
        if line.startswith('{"id"'):
            report = json.loads(line)
            reports[report["id"]] = (0, report, "")
    missing = [c for c in case_ids if c not in reports]
    if missing:
        reports[missing[0]] = (rc if rc != 0 else -1, None, err)
        if missing[1:]:
            reports.update(_run_cases(missing[1:]))
    return reports


@pytest.fixture(scope="module")
def results(request):
    """Reports of every selected case of this module, run in parallel groups."""
    wanted = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
        and "case" in item.callspec.params
    ]
    groups = [wanted[i:i + GROUP_SIZE] for i in range(0, len(wanted), GROUP_SIZE)]
    reports = {}
    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 2)) as pool:
        for part in pool.map(_run_cases, groups):
            reports.update(part)
    return reports


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(results, case):
    spec = CASES[case]
    expect = spec[2]
    rc, report, err = results[case] if case in results else _run_cases([case])[case]
    assert report is not None, f"the process died (return code {rc}):\n{err[-3000:]}"
    fast, book = report["fast"], report["book"]
    if fast["exc"] is not None:
        assert fast["changed"] == [], f"bpfast raised but changed {fast['changed']}"
        assert fast["msg"], "an exception without a message"
    if case.startswith("kernel-"):
        assert fast["exc"] is not None and expect in fast["exc"], fast
        return
    if expect == "same":
        if book["exc"] is not None:
            assert fast["exc"] is not None, (
                f"the book raises {book['exc'][0]}: {book['msg']}; bpfast returned")
            assert book["exc"][0] in fast["exc"], (fast["exc"][0], fast["msg"], book["exc"][0])
        else:
            assert fast["exc"] is None, f"bpfast raised {fast['exc'][0]}: {fast['msg']}"
            assert report["same_result"], "bpfast and the book return different results"
            assert fast["changed"] == book["changed"]
    elif expect == "ok":
        assert fast["exc"] is None, fast
        assert book["exc"] is not None  # the deviation is real: the book raises here
    else:
        assert fast["exc"] is not None and expect in fast["exc"], fast
        assert book["exc"] is None, "the book raises here too: make this case 'same'"
        if len(spec) > 3:
            assert re.search(spec[3], fast["msg"]), fast["msg"]


def test_a_crash_fails_only_its_own_case(monkeypatch):
    """The harness itself: a segfault is reported for its case; the others still run."""
    good = ("layer = L.Relu(); v = np.ones(2)", "layer.forward(v)", "same")
    monkeypatch.setitem(CASES, "selftest-good-1", good)
    monkeypatch.setitem(CASES, "selftest-crash",
                        ("import ctypes", "ctypes.string_at(0)", "same"))
    monkeypatch.setitem(CASES, "selftest-good-2", good)
    reports = _run_cases(["selftest-good-1", "selftest-crash", "selftest-good-2"])
    rc, report, err = reports["selftest-crash"]
    assert report is None and rc != 0
    for case in ("selftest-good-1", "selftest-good-2"):
        assert reports[case][1] is not None and reports[case][1]["fast"]["exc"] is None
