# Static partition of [0, n) into `parts` contiguous blocks, one per thread: each thread
# streams its own block, and results never depend on how many threads ran.
cdef inline Py_ssize_t block_start(Py_ssize_t n, Py_ssize_t parts, Py_ssize_t p) noexcept nogil:
    return (n * p) // parts
