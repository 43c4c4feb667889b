/* Links the installed liblowbit: prints the version and the bytes of one Q4_K row of 256. */
#include <stdio.h>

#include "lowbit.h"

int main(void) {
  uint64_t bytes = 0;
  if (lowbit_type_row_bytes("Q4_K", 256, &bytes) != LOWBIT_OK)
    return fprintf(stderr, "%s\n", lowbit_last_error()), 1;
  printf("lowbit %s Q4_K row of 256: %llu bytes\n", lowbit_version(), (unsigned long long)bytes);
  return bytes == 144 ? 0 : 1;
}
