// SPDX-License-Identifier: GPL-2.0
/* klp-ld bench: the other half of the two-object module; see a.c. */
#include "multi.h"

int multi_combine(int x)
{
	return multi_square(x) + 3 * x + multi_bias;
}
