"""pybpf.elf.sections: the SEC() table and libbpf's matching rules."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from pybpf.elf import sections
from pybpf.elf.sections import SECTION_DEFS, SecFlag, known_prefixes, parse_section
from pybpf.errors import NotSupportedError, ParseError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_table_shape():
    assert len(SECTION_DEFS) == 116             # libbpf's section_defs, 2026
    patterns = [d.pattern for d in SECTION_DEFS]
    assert len(set(patterns)) == len(patterns)
    assert known_prefixes()[:4] == ["socket", "sk_reuseport/migrate", "sk_reuseport", "kprobe"]
    for d in SECTION_DEFS:
        assert d.prog_type.isupper() and not d.prog_type.startswith("BPF_")
        assert d.expected_attach_type is None or not d.expected_attach_type.startswith("BPF_")
        assert (".s+" in d.pattern or d.pattern == "syscall") == bool(d.flags & SecFlag.SLEEPABLE)


@pytest.mark.parametrize("d", SECTION_DEFS, ids=lambda d: d.pattern)
def test_every_entry_parses(d):
    forms = [(d.prefix, "")]
    if d.pattern.endswith("+"):
        forms.append((d.prefix + "/some_target", "some_target"))
    for name, target in forms:
        info = parse_section(name)
        assert info.definition is d
        assert (info.section, info.target, info.autoload, info.legacy) == (name, target, True, False)
        assert info.prog_type == d.prog_type
        assert info.expected_attach_type == d.expected_attach_type
        assert info.attach_kind == d.attach_kind
        assert info.sleepable == bool(d.flags & SecFlag.SLEEPABLE)
        assert info.needs_btf_id == bool(d.flags & SecFlag.ATTACH_BTF)
        assert info.supported == (d.prog_type != "STRUCT_OPS")


@pytest.mark.parametrize("name, prog_type, attach_type, kind, target", [
    ("tracepoint/syscalls/sys_enter_openat", "TRACEPOINT", None, "tracepoint", "syscalls/sys_enter_openat"),
    ("tp/syscalls/sys_enter_openat", "TRACEPOINT", None, "tracepoint", "syscalls/sys_enter_openat"),
    ("tp.s/syscalls/sys_exit_getcwd", "TRACEPOINT", None, "tracepoint", "syscalls/sys_exit_getcwd"),
    ("raw_tp/sched_switch", "RAW_TRACEPOINT", None, "raw_tp", "sched_switch"),
    ("raw_tracepoint/sched_switch", "RAW_TRACEPOINT", None, "raw_tp", "sched_switch"),
    ("raw_tp.w/bpf_testmod_test_writable_bare", "RAW_TRACEPOINT_WRITABLE", None, "raw_tp",
     "bpf_testmod_test_writable_bare"),
    ("tp_btf/sched_switch", "TRACING", "TRACE_RAW_TP", "tp_btf", "sched_switch"),
    ("fentry/vfs_read", "TRACING", "TRACE_FENTRY", "fentry", "vfs_read"),
    ("fexit/vfs_read", "TRACING", "TRACE_FEXIT", "fexit", "vfs_read"),
    ("fmod_ret/security_file_open", "TRACING", "MODIFY_RETURN", "fmod_ret", "security_file_open"),
    ("fentry.multi/bpf_fentry_test*", "TRACING", "TRACE_FENTRY_MULTI", "fentry_multi", "bpf_fentry_test*"),
    ("lsm/file_open", "LSM", "LSM_MAC", "lsm", "file_open"),
    ("lsm_cgroup/socket_bind", "LSM", "LSM_CGROUP", "lsm_cgroup", "socket_bind"),
    ("iter/task", "TRACING", "TRACE_ITER", "iter", "task"),
    ("kprobe/do_sys_openat2+0x10", "KPROBE", None, "kprobe", "do_sys_openat2+0x10"),
    ("kretprobe/do_sys_openat2", "KPROBE", None, "kretprobe", "do_sys_openat2"),
    ("kprobe.multi/tcp_*", "KPROBE", "TRACE_KPROBE_MULTI", "kprobe_multi", "tcp_*"),
    ("ksyscall/openat", "KPROBE", None, "ksyscall", "openat"),
    ("uprobe//bin/bash:readline+4", "KPROBE", None, "uprobe", "/bin/bash:readline+4"),
    ("uretprobe/libc.so.6:malloc", "KPROBE", None, "uretprobe", "libc.so.6:malloc"),
    ("usdt/libc.so.6:libc:setjmp", "KPROBE", None, "usdt", "libc.so.6:libc:setjmp"),
    ("xdp", "XDP", "XDP", "xdp", ""),
    ("xdp.frags", "XDP", "XDP", "xdp", ""),
    ("xdp/devmap", "XDP", "XDP_DEVMAP", None, ""),
    ("xdp.frags/cpumap", "XDP", "XDP_CPUMAP", None, ""),
    ("tc", "SCHED_CLS", None, "tc", ""),
    ("classifier", "SCHED_CLS", None, "tc", ""),
    ("action", "SCHED_ACT", None, None, ""),
    ("tc/ingress", "SCHED_CLS", "TCX_INGRESS", "tcx", ""),
    ("tcx/egress", "SCHED_CLS", "TCX_EGRESS", "tcx", ""),
    ("socket", "SOCKET_FILTER", None, "socket", ""),
    ("perf_event", "PERF_EVENT", None, "perf_event", ""),
    ("syscall", "SYSCALL", None, "syscall", ""),
    ("sk_lookup", "SK_LOOKUP", "SK_LOOKUP", "sk_lookup", ""),
    ("netfilter", "NETFILTER", "NETFILTER", "netfilter", ""),
    ("lwt_xmit", "LWT_XMIT", None, None, ""),
    ("lirc_mode2", "LIRC_MODE2", "LIRC_MODE2", "lirc_mode2", ""),
    ("flow_dissector", "FLOW_DISSECTOR", "FLOW_DISSECTOR", "flow_dissector", ""),
    ("sk_reuseport/migrate", "SK_REUSEPORT", "SK_REUSEPORT_SELECT_OR_MIGRATE", "sk_reuseport", ""),
    ("sk_skb/stream_verdict", "SK_SKB", "SK_SKB_STREAM_VERDICT", "sk_skb", ""),
    ("sk_skb/verdict", "SK_SKB", "SK_SKB_VERDICT", "sk_skb", ""),
    ("sk_msg", "SK_MSG", "SK_MSG_VERDICT", "sk_msg", ""),
    ("sockops", "SOCK_OPS", "CGROUP_SOCK_OPS", "cgroup", ""),
    ("cgroup_skb/ingress", "CGROUP_SKB", "CGROUP_INET_INGRESS", "cgroup", ""),
    ("cgroup/sock", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE", "cgroup", ""),
    ("cgroup/connect_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_CONNECT", "cgroup", ""),
    ("cgroup/getsockname6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETSOCKNAME", "cgroup", ""),
    ("cgroup/dev", "CGROUP_DEVICE", "CGROUP_DEVICE", "cgroup", ""),
    ("struct_ops/dctcp_init", "STRUCT_OPS", None, "struct_ops", "dctcp_init"),
    ("freplace/handle_kprobe", "EXT", None, "freplace", "handle_kprobe"),
])
def test_known_names(name, prog_type, attach_type, kind, target):
    info = parse_section(name)
    assert (info.prog_type, info.expected_attach_type, info.attach_kind, info.target) == \
        (prog_type, attach_type, kind, target)


def test_question_mark_disables_autoload():
    info = parse_section("?tp/sched/sched_switch")
    assert not info.autoload
    assert info.section == "?tp/sched/sched_switch" and info.name == "tp/sched/sched_switch"
    assert (info.prog_type, info.target) == ("TRACEPOINT", "sched/sched_switch")
    assert parse_section("?xdp").autoload is False


def test_sleepable_forms():
    info = parse_section("uprobe.s//bin/bash:readline")
    assert info.sleepable and info.attach_kind == "uprobe" and info.target == "/bin/bash:readline"
    for name in ("fentry.s/vfs_read", "lsm.s/bprm_committed_creds", "iter.s/task", "tp_btf.s/x",
                 "raw_tp.s/x", "tracepoint.s/a/b", "usdt.s/p:q:r", "uprobe.multi.s/p:f*",
                 "struct_ops.s/x", "syscall"):
        assert parse_section(name).sleepable, name
    assert not parse_section("fentry/vfs_read").sleepable


def test_bare_names_and_btf_targets():
    bare = parse_section("kprobe")
    assert (bare.attach_kind, bare.target) == ("kprobe", "")
    fentry = parse_section("fentry")                # target supplied at load time
    assert fentry.needs_btf_id and fentry.target == ""
    assert not parse_section("fentry.multi/x").needs_btf_id
    assert parse_section("fentry.multi/x").flags & SecFlag.ATTACH_BTF_MULTI
    assert parse_section("xdp.frags").xdp_frags and not parse_section("xdp").xdp_frags


@pytest.mark.parametrize("name", ["fentry/", "kprobe/", "?tp/", "struct_ops/"])
def test_slash_without_target_is_an_error(name):
    with pytest.raises(ParseError, match="empty target") as e:
        parse_section(name)
    assert e.value.section == name


@pytest.mark.parametrize("name", ["bogus", "kprobeX", "kprobe.multiX/f", "cgroup/bind_unix", "xdp.frag",
                                  "tcx/clsact", "", "?", "fentry.x/vfs_read"])
def test_unknown_names_list_known_prefixes(name):
    with pytest.raises(ParseError) as e:
        parse_section(name)
    msg = str(e.value)
    assert f"section {name}" in msg or name == ""
    assert "known prefixes" in msg
    assert "kprobe[/...]" in msg and "uprobe[.s][/...]" in msg and "cgroup/{" in msg


def test_legacy_forms_need_strict_false():
    for name, prog_type, target in [("xdp/lo", "XDP", "lo"), ("classifier/ingress", "SCHED_CLS", "ingress"),
                                    ("socket/0", "SOCKET_FILTER", "0"), ("sockops/x", "SOCK_OPS", "x")]:
        with pytest.raises(ParseError, match="libbpf 1.0 dropped"):
            parse_section(name)
        info = parse_section(name, strict=False)
        assert info.legacy and (info.prog_type, info.target) == (prog_type, target)
    assert not parse_section("?xdp/lo", strict=False).autoload
    assert not parse_section("xdp/devmap", strict=False).legacy   # a real entry wins


def test_struct_ops_recognised_but_unsupported():
    info = parse_section("struct_ops/dctcp_init")
    assert not info.supported
    assert info.unsupported_reason == "struct_ops programs are recognised but not loadable yet"


# --- lazy enum resolution ----------------------------------------------------

def test_resolve_enum_values():
    consts = pytest.importorskip("pybpf.consts")
    info = parse_section("fentry/vfs_read")
    assert info.prog_type_enum() is consts.ProgType.TRACING
    assert info.attach_type_enum() is consts.AttachType.TRACE_FENTRY
    assert parse_section("socket").attach_type_enum() is None
    for d in SECTION_DEFS:                          # a member, or NotSupportedError: never KeyError
        info = parse_section(d.prefix)
        assert info.prog_type_enum().name == d.prog_type
        try:
            value = info.attach_type_enum()
        except NotSupportedError as e:
            assert d.expected_attach_type in str(e) and d.prefix in str(e)
        else:
            assert value is None or value.name == d.expected_attach_type
    with pytest.raises(NotSupportedError, match="BPF_PROG_TYPE_NOPE"):
        sections.resolve_prog_type("NOPE")


# --- tools/gen_sections.py -----------------------------------------------------

def _generator():
    spec = importlib.util.spec_from_file_location("gen_sections", ROOT / "tools" / "gen_sections.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# libbpf flag names, in the order libbpf writes them in an expression.
_LIBBPF_FLAGS = [(SecFlag.ATTACHABLE_OPT, "SEC_ATTACHABLE_OPT"), (SecFlag.ATTACHABLE, "SEC_ATTACHABLE"),
                 (SecFlag.ATTACH_BTF, "SEC_ATTACH_BTF"), (SecFlag.ATTACH_BTF_MULTI, "SEC_ATTACH_BTF_MULTI"),
                 (SecFlag.USDT, "SEC_USDT"), (SecFlag.SLEEPABLE, "SEC_SLEEPABLE"),
                 (SecFlag.XDP_FRAGS, "SEC_XDP_FRAGS")]


def _flag_expr(flags: SecFlag) -> str:
    names = []
    for flag, name in _LIBBPF_FLAGS:
        if flags & flag == flag:
            names.append(name)
            flags &= ~flag
    return " | ".join(names) or "SEC_NONE"


def _libbpf_text() -> str:
    """The current table rendered in libbpf.c's SEC_DEF() shape."""
    lines = ["static int attach_kprobe(const struct bpf_program *prog);",
             "static const struct bpf_sec_def section_defs[] = {"]
    for d in SECTION_DEFS:
        atype = f"BPF_{d.expected_attach_type}" if d.expected_attach_type else "0"
        lines.append(f'\tSEC_DEF("{d.pattern}",\t{d.prog_type}, {atype}, {_flag_expr(d.flags)}, attach_fn),')
    lines += ["};", "", "int libbpf_register_prog_handler(void) { return 0; }"]
    return "\n".join(lines)


def test_generator_reproduces_the_table():
    gen = _generator()
    rows = gen.rows_from_libbpf(_libbpf_text())
    assert [r[0] for r in rows] == [d.pattern for d in SECTION_DEFS]
    assert [r[4] for r in rows] == [d.attach_kind for d in SECTION_DEFS]   # derived attach kinds agree
    module = (ROOT / "pybpf" / "elf" / "sections.py").read_text()
    assert gen.replace_block(module, gen.render(rows)) == module


def test_generator_rejects_unknown_flags():
    gen = _generator()
    text = 'static const struct bpf_sec_def section_defs[] = {\n\tSEC_DEF("new+", KPROBE, 0, SEC_FANCY),\n};'
    with pytest.raises(SystemExit, match="SEC_FANCY"):
        gen.rows_from_libbpf(text)
