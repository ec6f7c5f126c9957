# The only place bpfast touches the OpenMP runtime.  Built without OpenMP (no -fopenmp, or
# BPFAST_DISABLE_OPENMP=1) the omp_* calls become serial stand-ins and Cython's prange
# pragmas are compiled out, so every kernel still runs, on one thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define BPFAST_OPENMP 1
    #else
    #define BPFAST_OPENMP 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint BPFAST_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
