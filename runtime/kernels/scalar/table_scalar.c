#include "../tier.h"

IE_GEMM_TIER(scalar, "scalar", NULL)
