// The shim is header-only (static inline functions); SwiftPM needs one source file for a C target.
#include "payhook_shim.h"
