/* USDT test target (needs <sys/sdt.h> from systemtap-sdt-dev).  Waits for one byte on
 * stdin (the test attaches first), then fires N times:
 *   pybpf_test:args    (int8 -5, uint16 65000, int32 -123456 - i, int64 1<<40 | i, char *msg, -7)
 *   pybpf_test:guarded (i) -- only while its semaphore is non-zero, i.e. while attached
 * and prints the semaphore values it saw. */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__extension__ unsigned short pybpf_test_args_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short pybpf_test_guarded_semaphore __attribute__((unused)) __attribute__((section(".probes")));

static char message[] = "hello usdt";

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	char c;

	if (read(0, &c, 1) != 1)
		return 1;
	for (int i = 0; i < n; i++) {
		volatile int8_t a = -5;
		volatile uint16_t b = 65000;
		volatile int32_t d = -123456 - i;
		volatile int64_t e = (1LL << 40) | i;
		char *volatile msg = message;

		STAP_PROBE6(pybpf_test, args, a, b, d, e, msg, -7);
		if (pybpf_test_guarded_semaphore)
			STAP_PROBE1(pybpf_test, guarded, i);
	}
	printf("%u %u\n", pybpf_test_args_semaphore, pybpf_test_guarded_semaphore);
	return 0;
}
