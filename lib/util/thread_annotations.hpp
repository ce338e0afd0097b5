// Clang's thread-safety annotations (-Wthread-safety): which mutex guards a
// member, which mutex a function needs held or must not hold. They document
// the locking in the code itself; under other compilers (g++) they are no-ops.
#pragma once

#if defined(__clang__)
#define LAYER_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LAYER_THREAD_ANNOTATION(x)
#endif

#define GUARDED_BY(x) LAYER_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) LAYER_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) LAYER_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) LAYER_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) LAYER_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) LAYER_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
