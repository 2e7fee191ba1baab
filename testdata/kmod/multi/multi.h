/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KLPB_MULTI_H
#define KLPB_MULTI_H

/* Defined in a.c, used by b.c. */
extern int multi_bias;
int multi_square(int x);

/* Defined in b.c, used by a.c. */
int multi_combine(int x);

#endif
