/* uprobe test target: waits for one byte on stdin (the test attaches first), then
 * calls pybpf_target_add(i, 100), getppid() and pybpf_lib_mul(i, 3) N times each
 * and prints the sum.  Built PIE and non-PIE by tests/kernel/test_attach_tracing.py. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int pybpf_lib_mul(int a, int b);   /* libpybpftarget.so */

/* noipa: no inlining, cloning or constant propagation, so the symbol is the code that runs */
__attribute__((noipa)) int pybpf_target_add(int a, int b)
{
	return a + b;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	long sum = 0;
	char c;

	if (read(0, &c, 1) != 1)
		return 1;
	for (int i = 0; i < n; i++) {
		sum += pybpf_target_add(i, 100);
		sum += getppid() > 0;
		sum += pybpf_lib_mul(i, 3);
	}
	printf("%ld\n", sum);
	return 0;
}
