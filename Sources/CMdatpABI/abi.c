/* The ABI header is checked by its _Static_asserts when this unit compiles. */
#include "mdatp_abi_user.h"
