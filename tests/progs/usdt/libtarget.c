/* The shared library half of uprobe_target.c (built as libpybpftarget.so). */
__attribute__((noipa)) int pybpf_lib_mul(int a, int b)
{
	return a * b;
}
