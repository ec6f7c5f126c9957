"""The ``bpfast`` command (also ``python -m bpfast``): train, gradient check, benchmarks.

::

    bpfast train                       # TwoLayerNet on the 5,000 embedded MNIST digits
    bpfast train --plot curve.png      # ... and save loss/accuracy curves (matplotlib)
    bpfast train --compare             # bpfast and the book's NumPy code, same seed and batches
    bpfast train --data fashion-mnist --epochs 1
    bpfast gradcheck                   # backprop vs numerical gradients, and their times
    bpfast bench --quick               # the benchmark table (bpfast.bench)

This module only parses arguments, prints and plots; the training loop is
:func:`bpfast.train.train`.  Every expected failure (bad arguments, a missing dataset, an
unwritable output file, a missing optional dependency) ends with one line
``bpfast: error: ...`` on stderr and a non-zero exit status, never a traceback; Ctrl-C exits
with status 130.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

PROG = "bpfast"
EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An expected failure: printed as one line ``bpfast: error: <message>``."""

    def __init__(self, message, status=EXIT_FAILURE):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage block) and raised, not exited."""

    def error(self, message):
        raise CommandError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)


# ------------------------------------------------------------------------------- argument types


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or a comma-separated list like 100,100; got {text!r}")
    return sizes


def _ratio(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a ratio in [0, 1), got {text!r}")
    return value


def _lower(text):
    return text.strip().lower()


# ------------------------------------------------------------------------------- parser


def build_parser():
    """The argument parser of the ``bpfast`` command (``train``, ``gradcheck``, ``bench``)."""
    from bpfast import __version__
    from bpfast.train import BACKENDS, DEFAULT_ITERS, MODELS, OPTIMIZERS

    parser = _Parser(
        prog=PROG,
        description="bpfast: the backpropagation layers of 'Deep Learning from Scratch', "
        "compiled. Train the book's networks, check gradients, time the layers.",
        epilog="Run 'bpfast COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # --- train
    models = "; ".join(f"{name}: {spec.help}" for name, spec in MODELS.items())
    sizes = "; ".join(f"{name} {','.join(map(str, spec.hidden))}" for name, spec in MODELS.items())
    tr = commands.add_parser(
        "train",
        help="train a network on MNIST-like data (the book's ch05/train_neuralnet.py)",
        description="Train one of the book's networks (by default chapter 5's TwoLayerNet) "
        "with mini-batch SGD, like ch05/train_neuralnet.py: random batches of --batch-size "
        "images, backpropagation, an optimizer step. Prints train/test accuracy after every epoch (one epoch = "
        "ceil(training images / batch size) steps), then the wall time and steps per second. "
        "By default it uses the 5,000 MNIST digits shipped with bpfast (4,000 train / 1,000 "
        "test), so it needs no download.",
        epilog="Examples: 'bpfast train --plot curve.png'; 'bpfast train --compare' (bpfast vs "
        "the book's NumPy code); 'bpfast train --data fashion-mnist --epochs 1'.",
    )
    data = tr.add_argument_group("data")
    data.add_argument(
        "--data", default="embedded", metavar="NAME|DIR",
        help="'embedded' (default: 5,000 MNIST digits shipped with bpfast, no network), "
        "'mnist', 'fashion-mnist' (looked up in $BPFAST_DATA, ~/.cache/bpfast, system "
        "folders, then downloaded), or a directory holding the four IDX files "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte (.gz or not)")
    net = tr.add_argument_group("network and optimizer")
    net.add_argument("--model", default="two-layer", type=_lower, choices=list(MODELS),
                     help=f"which network (default two-layer). {models}")
    net.add_argument("--hidden", type=_sizes, metavar="N[,N...]",
                     help="hidden layer size, or sizes for mlp/mlp-extend (default: "
                     f"{sizes})")
    net.add_argument("--weight-decay", type=float, metavar="LAMBDA",
                     help="L2 weight decay lambda (mlp, mlp-extend; default 0)")
    net.add_argument("--batchnorm", action="store_true",
                     help="Batch Normalization after every hidden Affine (mlp-extend)")
    net.add_argument("--dropout", type=_ratio, metavar="RATIO",
                     help="Dropout with this ratio after every hidden activation "
                     "(mlp-extend; the book's non-inverted dropout)")
    net.add_argument("--optimizer", default="sgd", type=_lower, choices=list(OPTIMIZERS),
                     help="update rule, from the book's common/optimizer.py (default sgd)")
    net.add_argument("--lr", type=_positive_float, metavar="RATE",
                     help="learning rate (default 0.1 for sgd as in the book's chapter 5; "
                     "otherwise the optimizer's own default: 0.01, or 0.001 for adam)")
    net.add_argument("--batch-size", type=_positive_int, default=100, metavar="N",
                     help="images per step, drawn at random with replacement (default 100)")
    length = net.add_mutually_exclusive_group()
    length.add_argument("--iters", type=_positive_int, metavar="N",
                        help=f"number of training steps (default {DEFAULT_ITERS}; the book "
                        "runs 10000 on the full MNIST)")
    length.add_argument("--epochs", type=_positive_float, metavar="E",
                        help="train for E epochs instead (may be fractional)")
    net.add_argument("--seed", type=int, default=0,
                     help="np.random.seed before building the network: initial weights and "
                     "batches are reproducible (default 0)")
    net.add_argument("--dtype", default="float64", type=_lower, choices=["float64", "float32"],
                     help="dtype of the weights (default float64, as in the book; float32, "
                     "faster, for two-layer only)")
    run = tr.add_argument_group("how to run")
    run.add_argument("--backend", default="bpfast", type=_lower, choices=list(BACKENDS),
                     help="bpfast (compiled, default) or reference (the book's pure-NumPy "
                     "classes)")
    run.add_argument("--compare", action="store_true",
                     help="train on both backends from the same seed, on the same batches, "
                     "taking turns of 20 steps (so both see the same machine load), and print "
                     "both times, the speedup and the final accuracies")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="threads of bpfast's compiled kernels (default: OMP_NUM_THREADS or "
                     "the number of CPUs), and of NumPy's BLAS if threadpoolctl is installed "
                     "(otherwise set OPENBLAS_NUM_THREADS=N); on a busy machine N=1 is often "
                     "much faster")
    out = tr.add_argument_group("output")
    out.add_argument("--plot", metavar="FILE.png",
                     help="save loss and accuracy curves to this image (needs matplotlib: "
                     "pip install \"bpfast[plot]\"); the format follows the extension")
    out.add_argument("--save-params", metavar="FILE",
                     help="save the trained parameters (bpfast's, with --compare): FILE.npz "
                     "with numpy.savez, any other name as a pickled dict, the format of the "
                     "book's save_params (load it with network.load_params(FILE))")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bar and no per-epoch lines, only the summary")

    # --- gradcheck
    gc = commands.add_parser(
        "gradcheck",
        help="compare backprop and numerical gradients (the book's ch05/gradient_check.py)",
        description="The book's gradient check: build TwoLayerNet, take the first --batch "
        "training images, compute the gradients by numerical differentiation (central "
        "differences, two loss evaluations per weight) and by backpropagation, and print "
        "the mean absolute difference per parameter (tiny, ~1e-7 or less, if backprop is "
        "right). Then print how long one numerical gradient and one backprop gradient "
        "take: backpropagation's whole point.",
    )
    gc.add_argument("--data", default="embedded", metavar="NAME|DIR",
                    help="dataset, as for 'bpfast train' (default embedded)")
    gc.add_argument("--batch", type=_positive_int, default=3, metavar="N",
                    help="number of training images (default 3, as in the book)")
    gc.add_argument("--hidden", type=_positive_int, default=50, metavar="N",
                    help="hidden layer size (default 50)")
    gc.add_argument("--seed", type=int, default=0, help="np.random.seed for the weights")
    gc.add_argument("--backend", default="bpfast", type=_lower, choices=list(BACKENDS),
                    help="bpfast (default) or reference (the book's code)")

    # --- bench (dispatched before parsing; listed here for 'bpfast --help')
    commands.add_parser(
        "bench", add_help=False,
        help="benchmark table: the book's NumPy layers vs bpfast (see 'bpfast bench --help')")
    return parser


# ------------------------------------------------------------------------------- helpers


def _error_line(exc):
    """One line from an exception message (some dataset errors span several lines)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def _check_writable(path, option):
    """Fail now, not after training, if ``path`` cannot be written.

    Opens the file as the final write will (creating it and removing it again if it did not
    exist): this answers for permissions, read-only file systems and missing folders alike.
    """
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{option} {path}: is a directory")
    try:
        if p.exists():
            with open(p, "ab"):
                pass
        else:
            with open(p, "xb"):
                pass
            p.unlink()
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None


def _plot_format(path):
    """Check that matplotlib imports and knows the file's format; return the format."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CommandError(
            '--plot needs matplotlib, which is not installed: pip install "bpfast[plot]"'
        ) from None
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise CommandError(f"--plot {path}: unknown image format {fmt!r}; use one of "
                           f"{', '.join(sorted(supported))}")
    return fmt


def _plot(results, path, fmt, data_name):
    """Loss per step and accuracy per epoch, one line style per backend."""
    # The object-oriented API: no pyplot, so no GUI backend and no global figure state.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    styles = {"bpfast": "-", "reference": "--"}
    for r in results:
        label = r.backend if len(results) > 1 else None
        steps = np.arange(1, r.iters + 1)
        ax_loss.plot(steps, r.loss, styles[r.backend], linewidth=0.6, label=label)
        epochs = r.eval_epochs
        ax_acc.plot(epochs, r.train_acc, styles[r.backend], color="C0",
                    label=f"train ({r.backend})" if label else "train")
        ax_acc.plot(epochs, r.test_acc, styles[r.backend], color="C1",
                    label=f"test ({r.backend})" if label else "test")
    first = results[0]
    ax_loss.set(xlabel="step", ylabel="loss (batch, before the update)",
                title=f"{first.model} on {data_name}: {first.optimizer} lr {first.lr:g}, "
                f"batch {first.batch_size}, {first.dtype}")
    if len(results) > 1:
        ax_loss.legend()
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")
    fig.savefig(path, format=fmt, dpi=100)


class _Bar:
    """tqdm progress bar with the running loss, and the per-epoch accuracy lines."""

    # Refresh the loss shown in the bar every this many steps (formatting costs a few us).
    _POSTFIX_EVERY = 20

    def __init__(self, label, position):
        self.label = label
        self.position = position  # --compare draws one bar per backend, one above the other
        self.bar = None
        self.count = 0

    def start(self, total_steps):
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (pipes, logs, tests).
        self.bar = tqdm(total=total_steps, desc=self.label or None, unit="step", disable=None,
                        leave=False, dynamic_ncols=True, position=self.position)

    def step(self, loss):
        self.count += 1
        if self.count % self._POSTFIX_EVERY == 0:
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self.bar.update()

    def evaluated(self, epoch, step, train_acc, test_acc):
        from tqdm import tqdm

        prefix = f"[{self.label}] " if self.label else ""
        tqdm.write(f"{prefix}epoch {epoch:>6.6g}  "
                   f"step {step:>6d}  train acc {train_acc:.4f}  test acc {test_acc:.4f}",
                   file=sys.stdout)
        sys.stdout.flush()  # one line per epoch also through a pipe (`| tee log`)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _threads(n):
    """bpfast's kernel threads (and NumPy's BLAS threads, with threadpoolctl) set to ``n``."""
    import bpfast

    if n is None:
        yield
        return
    previous = bpfast.set_num_threads(n)
    try:
        with contextlib.ExitStack() as stack:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                pass
            else:
                stack.enter_context(threadpool_limits(n, user_api="blas"))
            yield
    finally:  # restore: main() is also called in-process (tests)
        bpfast.set_num_threads(previous)


def _save_params(network, path):
    if str(path).lower().endswith(".npz"):
        np.savez(path, **{key: np.asarray(value) for key, value in network.params.items()})
    else:
        # The book's format (a pickled dict), written atomically; any network's
        # load_params(path) reads it back.
        from bpfast._network import ParamsFile

        ParamsFile.save_params(network, path)


def _summary(r):
    return (f"wall time {r.wall_time:.2f} s (training {r.train_time:.2f} s, evaluation "
            f"{r.eval_time:.2f} s); {r.steps_per_second:,.0f} steps/s")


# ------------------------------------------------------------------------------- commands


def _cmd_train(args):
    from bpfast import datasets
    from bpfast.train import (BACKENDS, Progress, compare, default_lr, load_data,
                              resolve_iters, resolve_model, train)

    fmt = None
    if args.plot:
        fmt = _plot_format(args.plot)  # before training: a missing matplotlib fails now
        _check_writable(args.plot, "--plot")
    if args.save_params:
        _check_writable(args.save_params, "--save-params")
    options = {"weight_decay": args.weight_decay, "batchnorm": args.batchnorm or None,
               "dropout": args.dropout}
    options = {name: value for name, value in options.items() if value is not None}
    try:
        spec, hidden = resolve_model(args.model, args.hidden, args.dtype, options)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        data = load_data(args.data, flatten=spec.flatten)
    except (datasets.DatasetNotFoundError, ValueError, OSError) as exc:
        raise CommandError(f"--data {args.data}: {_error_line(exc)}") from None

    n_train = data.x_train.shape[0]
    iters, per_epoch = resolve_iters(n_train, args.batch_size, args.iters, args.epochs)
    shape = "x".join(map(str, data.sample_shape))
    print(f"data: {data.name}: {n_train:,} training and {data.x_test.shape[0]:,} test images "
          f"of {shape}, {data.n_classes} classes")
    lr = default_lr(args.optimizer) if args.lr is None else args.lr
    extras = "".join(f", {name.replace('_', ' ')} {value}" if value is not True else f", {name}"
                     for name, value in options.items())
    print(f"model: {args.model} (hidden {','.join(map(str, hidden))}{extras}), "
          f"{args.optimizer} lr {lr:g}, batch "
          f"{args.batch_size}, {args.dtype}, seed {args.seed}; {iters:,} steps = "
          f"{iters / per_epoch:g} epoch{'' if iters == per_epoch else 's'} of {per_epoch:,} "
          "steps")
    settings = dict(model=args.model, hidden=hidden, batch_size=args.batch_size,
                    optimizer=args.optimizer, lr=args.lr, iters=args.iters, epochs=args.epochs,
                    seed=args.seed, dtype=args.dtype, model_options=options)
    with _threads(args.threads):
        if args.compare:
            bars = {backend: position for position, backend in enumerate(BACKENDS)}
            results = compare(data, backends=BACKENDS, **settings, progress_for=lambda b: (
                Progress() if args.quiet else _Bar(b, bars[b])))
        else:
            results = [train(data, backend=args.backend, **settings,
                             progress=Progress() if args.quiet else _Bar("", 0))]
    for result in results:
        print(f"{result.backend}: final train acc {result.train_acc[-1]:.4f}  test acc "
              f"{result.test_acc[-1]:.4f}")
        print(f"{result.backend}: {_summary(result)}")

    if args.compare:
        fast, ref = results
        print(f"speedup (bpfast vs reference): training steps "
              f"{ref.train_time / fast.train_time:.2f}x, wall time "
              f"{ref.wall_time / fast.wall_time:.2f}x")
        diff = np.max(np.abs(fast.loss - ref.loss) / np.maximum(np.abs(ref.loss), 1e-300))
        print(f"loss histories: largest relative difference {diff:.2e} over {fast.iters:,} "
              f"steps")
    if args.plot:
        try:
            _plot(results, args.plot, fmt, Path(data.name).name or data.name)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--plot {args.plot}: {_error_line(exc)}") from None
        print(f"plot: {args.plot}")
    if args.save_params:
        try:
            _save_params(results[0].network, args.save_params)
        except OSError as exc:
            raise CommandError(f"--save-params {args.save_params}: {_error_line(exc)}") from None
        print(f"parameters: {args.save_params}")
    return 0


def _cmd_gradcheck(args):
    from bpfast import datasets
    from bpfast.train import gradient_check_timed, load_data, make_network, relu_kinks

    try:
        data = load_data(args.data)
    except (datasets.DatasetNotFoundError, ValueError, OSError) as exc:
        raise CommandError(f"--data {args.data}: {_error_line(exc)}") from None
    n = min(args.batch, data.x_train.shape[0])
    x = data.x_train[:n]
    # One-hot targets, as the book's gradient_check.py loads them.
    t = np.zeros((n, data.n_classes))
    t[np.arange(n), data.t_train[:n]] = 1
    np.random.seed(args.seed)
    network = make_network("two-layer", args.backend, data.sample_shape, data.n_classes,
                           args.hidden)
    print(f"gradient check: {args.backend} TwoLayerNet({x.shape[1]}, {args.hidden}, "
          f"{data.n_classes}), {n} images of {data.name}, seed {args.seed}")
    print("mean |backprop - numerical| per parameter:")
    r = gradient_check_timed(network, x, t, file=sys.stdout)
    print(f"numerical gradient: {r.numerical_time * 1e3:,.1f} ms (one call: "
          f"{2 * r.n_params:,} loss evaluations for {r.n_params:,} parameters)")
    print(f"backprop gradient:  {r.backprop_time * 1e6:,.1f} us (one call, median of repeated "
          f"timings)")
    print(f"backpropagation is {r.ratio:,.0f}x faster")
    kinks = relu_kinks(network, x)
    if kinks:
        print(f"note: {kinks} hidden pre-activation(s) lie within h=1e-4 of the ReLU kink: "
              "there the numerical derivative straddles the kink, so W1/b1 differ by more "
              "than usual; backprop is still right (try another --seed)")
    return 0


# ------------------------------------------------------------------------------- entry point


def main(argv=None):
    """Run the ``bpfast`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on a failure (missing dataset, unwritable file...),
        2 on bad arguments, 130 when interrupted with Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "bench":
            from bpfast import bench

            return bench.main(argv[1:], prog=f"{PROG} bench")
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        if args.command == "train":
            return _cmd_train(args)
        return _cmd_gradcheck(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help, --version, and bench's own argparse errors
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # `bpfast train | head`: the reader went away; nothing left to say.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return EXIT_FAILURE
