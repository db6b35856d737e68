/* User-space view of the kernel ABI header (bpf/include/mdatp_abi.h). */
#ifndef MDATP_ABI_USER_H
#define MDATP_ABI_USER_H
#include <linux/types.h>
#include "../../../bpf/include/mdatp_abi.h"
#endif
