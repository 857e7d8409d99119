"""vmtest: run a command in a Debian guest kernel under QEMU (TCG) with the host's filesystem.

The host kernel (6.18 here) refuses BPF trampolines and has no kprobes, so the tests
that need them run in guests: Debian's 5.10, 6.1 and 6.12 kernels, booted with
``qemu-system-x86_64 -accel tcg,thread=single`` on a tiny initramfs of our own that mounts the
host's root filesystem read-only over 9p under a tmpfs overlay (writes in the guest
go to memory and vanish with it).  See docs/vmtest.md.

Modules:

- :mod:`.kernels` -- which Debian package each kernel series comes from; fetching,
  unpacking and caching it (``apt-get download``, never installed).
- :mod:`.initramfs` -- the newc cpio archive: busybox, the 9p/virtio/overlay modules,
  and the guest's init (mounts, the command, its exit status, power-off).
- :mod:`.runner` -- the QEMU command line, console streaming, timeout, exit status.
- :mod:`.host` -- host packages (QEMU, busybox-static, kmod, zstd) and the BPF objects
  built before booting.
- :mod:`.suite` -- the CI guest test set on several kernels and its summary lines.
- :mod:`.cli` -- ``tools/vmtest`` argument parsing.
- :mod:`.guest_pytest` -- pytest plugin loaded inside the guest.

Only the standard library is used on the host side, so ``tools/vmtest`` runs with
any Python 3.9+ before the project's virtualenv exists.
"""
