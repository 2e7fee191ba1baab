"""A long fuzzing campaign against the real klp-ld command line (run on demand; pytest does not collect it).

    python benchmarks/fuzz_campaign.py [--runs 12000] [--jobs 2] [--seed 1] [--timeout 30] [--out DIR]
                                        [--targets partial,final,...,cmdline]

Seeds are real objects: the seed livepatch module (testdata/kmod/seed) built by kbuild against the
Debian 6.1 headers with LD=klp-ld (its gcc objects, klp-ld's partial-link output klp_seed.o, the
.mod.o and the converted .ko, and the .ko as plain ld links it before conversion), the unit-test
objects of both annotation dialects, a few Debian 6.1 modules and 6.12 .ko.xz from the kernel
bench cache (~/.cache/klp-ld/bench/<release>/image), and the bench's real 6.1 kallsyms dump.

Every run mutates one seed with tests/hardening/mutate.py and drives one command in a fresh
directory with its own TMPDIR and a time limit:
  partial   klp-ld -m elf_x86_64 -z noexecstack -r -o out.o MUTANT seed_b.o
  module    klp-ld -r -o out.o seed_a.o MUTANT          (MUTANT from a Debian module)
  final     klp-ld -r -m elf_x86_64 --build-id=sha1 -T module.lds -o out.ko MUTANT klp_seed.mod.o
  prelinked klp-ld -r -T module.lds -o out.ko MUTANT    (MUTANT: the .ko before conversion)
  check     klp-ld check MUTANT.ko
  symbols   klp-ld --klp-symbols=MUTANT -r -o out.o seed_a.o seed_b.o  (kallsyms text, .ko, .ko.xz)
  cmdline   the same real objects (annotated or not) behind a random command-line shape from
            mutate.command_shape: response files nested, recursive and quoted; archives plain
            and thin, with --whole-archive or through -l; outputs in missing directories, FIFOs,
            private devices, inputs, long names; every spelling of -o, -r and -T; side outputs
and judges it with tests/hardening/drive.py: ok / clean error / ld error (the real ld ran and failed,
its message passed through) / traceback / internal error / hang / leftover output / malformed
diagnostics. A cmdline run is also run through plain ld in a twin directory, and judged by the
wrong-output oracle: status 0 means the output exists and is a regular file, where plain ld
succeeds too; for a command with no annotated input it is byte-identical to plain ld's; a partial
link keeps every annotation's meaning (no "annotated more than once" in the output), a final link
leaves no unconverted identity; side outputs name no temporary file; --dry-run writes nothing.
A refusal of what plain ld links ("refused") is counted, not judged bad. Bad outcomes are saved as
reproducers (mutant or shape, command, stderr) under --out.
"""

from __future__ import annotations

import argparse
import collections
import json
import lzma
import multiprocessing
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._bench import HEADERS_61, KMOD, OBJECTS, PYTHON, bench_cache, klp_env  # noqa: E402
from tests.hardening import drive, mutate  # noqa: E402

KERNEL_CFLAGS = ["-O2", "-mcmodel=kernel", "-fno-pic", "-ffunction-sections", "-fdata-sections",
                 "-mno-red-zone", "-fno-asynchronous-unwind-tables", "-fno-stack-protector"]
DEBIAN_61 = ["drivers/net/dummy.ko", "drivers/block/loop.ko", "fs/nls/nls_utf8.ko", "net/key/af_key.ko"]
DEBIAN_612 = ["drivers/net/dummy.ko.xz", "drivers/block/loop.ko.xz", "fs/nls/nls_utf8.ko.xz"]
TARGETS = {"partial": 5, "module": 2, "final": 4, "prelinked": 2, "check": 2, "symbols": 2, "cmdline": 6}
WRONG = "wrong output"   # status 0 with a wrong, missing or non-regular output
REFUSED = "refused"      # klp-ld refused a link plain ld does (counted, not bad)
LD_HANG = "ld hang"      # a pass-through whose ld waits on a FIFO, as plain ld does (not bad)
BAD = (*drive.BAD, WRONG)
OUTCOMES = (*drive.OUTCOMES, WRONG, REFUSED, LD_HANG)
CMDLINE_OBJECTS = ("seed_a.o", "seed_b.o", "plain.o", "other.o")
CMDLINE_ANNOTATED = ("seed_a.o", "seed_b.o")
CMDLINE_FINAL = ("klp_seed.o", "klp_seed.mod.o")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env or klp_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"seed preparation failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}")


def prepare_seeds(work: Path) -> dict[str, dict[str, bytes]]:
    """Build or collect every seed; returns {target: {name: bytes}} plus 'support' files."""
    if not HEADERS_61.is_dir():
        sys.exit(f"cannot run: {HEADERS_61} is missing (apt-get install linux-headers-6.1.0-50-amd64)")
    kb = work / "kbuild-seed"
    shutil.copytree(KMOD / "seed", kb)
    _run(["make", "-s", "-C", str(HEADERS_61), f"M={kb}", f"LD={ROOT / 'wrappers' / 'klp-ld'}", "-j2",
          "modules"], kb, klp_env({"KLP_LD_NO_DISCOVER": "1"}))
    lds = HEADERS_61 / "arch" / "x86" / "module.lds"
    _run(["ld", "-r", "-m", "elf_x86_64", "-T", str(lds), "-o", "prelinked.ko", "klp_seed.o",
          "klp_seed.mod.o"], kb)
    unit = work / "unit"
    unit.mkdir()
    (unit / "other.c").write_text("int other_fn(void) { return 3; }\n")
    for src in ("seed_a.c", "seed_b.c", "dotted.s", "auto.c", "modinfo.c", "plain.c", str(unit / "other.c")):
        _run(["gcc", "-c", *KERNEL_CFLAGS, "-I", str(OBJECTS), "-o", f"{Path(src).stem}.o",
              str(OBJECTS / src)], unit)
    _run(["ld", "-r", "-o", "m.o", "seed_a.o", "seed_b.o"], unit)

    def read(path: Path) -> bytes:
        return path.read_bytes()

    seeds: dict[str, dict[str, bytes]] = {
        "partial": {f"kbuild/{n}": read(kb / n) for n in ("seed_main.o", "seed_a.o", "seed_b.o")}
        | {f"unit/{n}": read(unit / n) for n in ("seed_a.o", "dotted.o", "auto.o", "m.o")},
        "final": {"kbuild/klp_seed.o": read(kb / "klp_seed.o")},
        "prelinked": {"kbuild/prelinked.ko": read(kb / "prelinked.ko")},
        "check": {"kbuild/klp_seed.ko": read(kb / "klp_seed.ko")},
        "module": {},
        "symbols": {},
        "support": {"seed_a.o": read(kb / "seed_a.o"), "seed_b.o": read(kb / "seed_b.o"),
                    "klp_seed.mod.o": read(kb / "klp_seed.mod.o"), "module.lds": read(lds),
                    "klp_seed.o": read(kb / "klp_seed.o"), "plain.o": read(unit / "plain.o"),
                    "other.o": read(unit / "other.o")},
        "cmdline": {"shapes": b""},
    }
    for release, names in (("6.1.0-50-amd64", DEBIAN_61), ("6.12.117+deb12-amd64", DEBIAN_612)):
        base = bench_cache(release) / "image" / "lib" / "modules" / release / "kernel"
        for name in names:
            path = base / name
            if not path.is_file():
                print(f"note: {path} is missing (the kernel bench cache has not been filled); skipped")
                continue
            data = read(path)
            plain = lzma.decompress(data) if name.endswith(".xz") else data
            seeds["module"][f"{release}/{name.removesuffix('.xz')}"] = plain
            seeds["symbols"][f"{release}/{Path(name).name}"] = data
    kallsyms = bench_cache() / "kallsyms"
    if kallsyms.is_file():
        seeds["symbols"]["6.1/kallsyms"] = read(kallsyms)
    else:
        seeds["symbols"]["unit/kallsyms.txt"] = read(ROOT / "testdata" / "symbols" / "kallsyms.txt")
    seeds["symbols"]["unit/System.map"] = read(ROOT / "testdata" / "symbols" / "System.map")
    return seeds


# ---------------------------------------------------------------------------------------------
# One run


def _mutate_text(data: bytes, rnd: random.Random, fmt: str) -> bytes:
    """Line-level mutations of a text symbol source; a large dump is sampled down first."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) > 4000 and rnd.random() < 0.9:
        keep = sorted(rnd.sample(range(len(lines)), 3000))
        lines = [lines[i] for i in keep] + [ln for ln in lines if ln.endswith(" state_show")]
    for _ in range(rnd.randint(1, 6)):
        if not lines:
            break
        i = rnd.randrange(len(lines))
        op = rnd.choice(("replace", "delete", "duplicate", "swap", "bytes", "truncate"))
        if op == "replace":
            lines[i] = mutate.random_line(rnd, fmt)
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(rnd.randrange(len(lines) + 1), lines[i])
        elif op == "swap":
            fields = lines[i].split(" ")
            rnd.shuffle(fields)
            lines[i] = " ".join(fields)
        elif op == "bytes":
            at = rnd.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rnd.choice(("\0", "\udcff", "\t", "\r", " ")) + lines[i][at:]
        else:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: rnd.randrange(len(lines[-1]) + 1)]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def make_case(target: str, name: str, seed: bytes, rnd: random.Random) -> tuple[bytes, list[str], str]:
    """(mutant bytes, mutations applied, file name to give it)."""
    if target != "symbols":
        data, applied = mutate.mutate(seed, rnd)
        return data, applied, "mutant.ko" if target in ("check", "prelinked") else "mutant.o"
    if name.endswith(".ko.xz"):
        inner, applied = mutate.mutate(lzma.decompress(seed), rnd)
        packed = lzma.compress(inner)
        if rnd.random() < 0.2:
            cut = rnd.randrange(len(packed))
            packed = packed[:cut] + bytes([packed[cut] ^ 0xA5]) + packed[cut + 1:]
            applied.append("xz-damage")
        return packed, applied, "mutant.ko.xz"
    if name.endswith(".ko"):
        data, applied = mutate.mutate(seed, rnd)
        return data, applied, "mutant.ko"
    fmt = "kallsyms" if "kallsyms" in name else "system-map"
    return _mutate_text(seed, rnd, fmt), ["text"], "kallsyms" if fmt == "kallsyms" else "System.map"


def command(target: str, mutant: str, real_ld: Path) -> tuple[list[str], str | None]:
    ld = f"--klp-real-ld={real_ld}"
    if target == "partial":
        return [ld, "-m", "elf_x86_64", "-z", "noexecstack", "-r", "-o", "out.o", mutant, "seed_b.o"], "out.o"
    if target == "module":
        return [ld, "-r", "-o", "out.o", "seed_a.o", mutant], "out.o"
    if target == "final":
        return [ld, "-r", "-m", "elf_x86_64", "--build-id=sha1", "-T", "module.lds", "-o", "out.ko", mutant,
                "klp_seed.mod.o"], "out.ko"
    if target == "prelinked":
        return [ld, "-r", "-T", "module.lds", "-o", "out.ko", mutant], "out.ko"
    if target == "check":
        return ["check", mutant], None
    return [ld, f"--klp-symbols={mutant}", "-r", "-o", "out.o", "seed_a.o", "seed_b.o"], "out.o"


_SEEDS: dict[str, dict[str, bytes]] = {}
_SCRATCH = Path()
_TIMEOUT = 30.0


def _init(seeds: dict[str, dict[str, bytes]], scratch: Path, timeout: float) -> None:
    global _SEEDS, _SCRATCH, _TIMEOUT
    _SEEDS, _SCRATCH, _TIMEOUT = seeds, scratch, timeout


def one_run(task: tuple[int, int]) -> dict[str, object]:
    base_seed, index = task
    rnd = random.Random(f"{base_seed}:{index}")
    targets = [t for t in TARGETS if _SEEDS.get(t)]
    target = rnd.choices(targets, [TARGETS[t] for t in targets])[0]
    if target == "cmdline":
        return cmdline_run(index, rnd)
    name = rnd.choice(sorted(_SEEDS[target]))
    data, applied, file_name = make_case(target, name, _SEEDS[target][name], rnd)
    with tempfile.TemporaryDirectory(prefix=f"run{index}-", dir=_SCRATCH) as scratch:
        base = Path(scratch)
        rundir, tmp = base / "run", base / "tmp"
        rundir.mkdir()
        tmp.mkdir()
        real_ld = drive.install_marking_ld(base)
        for support, content in _SEEDS["support"].items():
            (rundir / support).write_bytes(content)
        (rundir / file_name).write_bytes(data)
        args, output = command(target, file_name, real_ld)
        expected = {p.name for p in rundir.iterdir()}
        started = time.monotonic()
        status, _, stderr = drive.run_cli(args, rundir, tmpdir=tmp, timeout=_TIMEOUT, python=PYTHON)
        elapsed = time.monotonic() - started
        verdict = drive.judge_cli(status, stderr, output=rundir / output if output else None,
                                  expected=expected, rundir=rundir, tmpdir=tmp,
                                  ld_ran=(rundir / drive.LD_MARK).exists())
    result: dict[str, object] = {"index": index, "target": target, "seed": name, "mutations": applied,
                                 "outcome": verdict.outcome, "detail": verdict.detail[:300],
                                 "seconds": elapsed}
    if verdict.bad:
        result["mutant"] = data.hex()
        result["args"] = args
        result["stderr"] = stderr[-4000:]
    return result


# ---------------------------------------------------------------------------------------------
# Command-line shapes and the wrong-output oracle


def _materialize(shape: mutate.Shape, directory: Path) -> None:
    for name, content in _SEEDS["support"].items():
        (directory / name).write_bytes(content)
    for entry in shape.entries:
        path = directory / entry.path
        if entry.kind == "copy":
            path.write_bytes(_SEEDS["support"][entry.source])
        elif entry.kind == "text":
            path.write_text(entry.source)
        elif entry.kind == "dir":
            path.mkdir()
        elif entry.kind == "fifo":
            os.mkfifo(path)
        elif entry.kind == "chardev":
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
        elif entry.kind == "symlink":
            path.symlink_to(entry.source)
        elif entry.kind == "hardlink":
            os.link(directory / entry.source, path)
        else:
            flags = "rcsT" if entry.kind == "thin-ar" else "rcs"
            subprocess.run(["ar", flags, entry.path, *entry.members], cwd=directory, check=True,
                           capture_output=True)


def _files(directory: Path) -> dict[str, bytes | None]:
    """Every file under `directory` (relative name -> bytes, None for what is not a regular file)."""
    out: dict[str, bytes | None] = {}
    for path in directory.rglob("*"):
        rel = str(path.relative_to(directory))
        out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return out


def wrong_output(shape: mutate.Shape, status: int, rundir: Path, before: dict[str, bytes | None],
                 plain_status: int | None, plain: Path) -> str | None:
    """Why a status-0 run of `shape` left a wrong output, or None when the output is right."""
    from klp_ld.annotations import harvest
    from klp_ld.diag import KlpLdError
    from klp_ld.elf.read import read_elf

    after = _files(rundir)
    if shape.klp == ("--dry-run",):
        changed = sorted(k for k in after if k != drive.LD_MARK and after[k] != before.get(k, b"\0missing"))
        return f"--dry-run wrote {changed}" if changed else None
    if plain_status is not None and plain_status != 0:
        return f"status 0 where plain ld exits {plain_status}"
    out = rundir / shape.output
    try:
        mode = os.lstat(out).st_mode
    except OSError:
        return f"status 0 but {shape.output} is missing"
    if not any(seed in CMDLINE_ANNOTATED or seed in CMDLINE_FINAL for seed in shape.inputs):
        # a pass-through is ld itself: what plain ld wrote, where it wrote it (a device included)
        theirs = os.lstat(plain / shape.output).st_mode
        if stat.S_IFMT(mode) != stat.S_IFMT(theirs):
            return "a pass-through whose output is not the kind of file plain ld's is"
        if stat.S_ISREG(mode) and out.read_bytes() != (plain / shape.output).read_bytes():
            return "a pass-through whose output differs from plain ld's"
        return None
    if not stat.S_ISREG(mode):
        return f"{shape.output} is not a regular file"
    data = out.read_bytes()
    for side in shape.sides:
        side_path = rundir / side
        if not side_path.is_file():
            return f"side output {side} is missing"
        if b"klp-ld-" in side_path.read_bytes():
            return f"side output {side} names klp-ld's temporary files"
    try:
        obj = read_elf(data, shape.output)
    except KlpLdError as exc:
        return f"the output does not read back: {exc}"
    if shape.final:
        left = sorted(s.name for s in obj.symbols if s.name.startswith(".klp.sym.") and s.is_undefined)
        left += sorted(sec.name for sec in obj.sections if sec.name.startswith(".klp.module_relocs."))
        return f"unconverted livepatch identities: {left[:3]}" if left else None
    merged = [p for p in harvest(obj).problems if p.code == "annotation-conflict"]
    return f"annotations merged: {merged[0].render().splitlines()[0]}" if merged else None


def cmdline_run(index: int, rnd: random.Random) -> dict[str, object]:
    shape = mutate.command_shape(rnd, CMDLINE_OBJECTS, CMDLINE_ANNOTATED, CMDLINE_FINAL,
                                 can_mknod=os.geteuid() == 0)
    with tempfile.TemporaryDirectory(prefix=f"run{index}-", dir=_SCRATCH) as scratch:
        base = Path(scratch)
        rundir, tmp, plain = base / "run", base / "tmp", base / "plain"
        for d in (rundir, tmp, plain):
            d.mkdir()
        real_ld = drive.install_marking_ld(base)
        _materialize(shape, rundir)
        _materialize(shape, plain)
        before = _files(rundir)
        plain_status: int | None = None
        plain_before = _files(plain)
        if "output-fifo" not in shape.traits:  # ld would wait for a reader of the FIFO
            try:
                plain_status = subprocess.run(["ld", *shape.args], cwd=plain, capture_output=True,
                                              timeout=_TIMEOUT, check=False).returncode
            except subprocess.TimeoutExpired:
                plain_status = None
        plain_left = {k for k in _files(plain) if k not in plain_before}
        args = [f"--klp-real-ld={real_ld}", *shape.klp, *shape.args]
        started = time.monotonic()
        status, _, stderr = drive.run_cli(args, rundir, tmpdir=tmp, timeout=_TIMEOUT, python=PYTHON)
        elapsed = time.monotonic() - started
        ld_ran = (rundir / drive.LD_MARK).exists()
        verdict = _judge_shape(shape, status, stderr, rundir, tmp, before, plain_status, plain, plain_left,
                               ld_ran)
    result: dict[str, object] = {"index": index, "target": "cmdline", "seed": "shape", "mutations": [],
                                 "outcome": verdict.outcome, "detail": verdict.detail[:300],
                                 "seconds": elapsed, "traits": list(shape.traits)}
    if verdict.outcome in BAD:
        result["shape"] = repr(shape)
        result["args"] = args
        result["stderr"] = stderr[-4000:]
    return result


def _judge_shape(shape: mutate.Shape, status: int | None, stderr: str, rundir: Path, tmp: Path,
                 before: dict[str, bytes | None], plain_status: int | None, plain: Path,
                 plain_left: set[str], ld_ran: bool) -> drive.Verdict:
    passed_through = not any(seed in CMDLINE_ANNOTATED or seed in CMDLINE_FINAL for seed in shape.inputs)
    if status is None:
        if ld_ran and passed_through:
            return drive.Verdict(LD_HANG, "the real ld waits, as plain ld does (a FIFO among its files)")
        return drive.Verdict(drive.HANG, "no exit within the time limit")
    crash = drive.crash_problem(stderr)
    if crash is not None:
        return drive.Verdict(crash, stderr[-2000:])
    if any(tmp.iterdir()):
        return drive.Verdict(drive.LEFTOVER, f"left in TMPDIR {sorted(p.name for p in tmp.iterdir())}")
    temps = [str(p.relative_to(rundir)) for p in rundir.rglob(".klp-ld-*")]
    if temps:
        return drive.Verdict(drive.LEFTOVER, f"temporary files left: {temps}")
    if status == 0:
        wrong = wrong_output(shape, status, rundir, before, plain_status, plain)
        return drive.Verdict(WRONG, wrong) if wrong else drive.Verdict(drive.OK)
    new = {k for k in _files(rundir) if k not in before and k != drive.LD_MARK}
    if ld_ran and passed_through:
        allowed = new  # ld's own leftovers (a map beside a FIFO it could not write): klp-ld is ld here
    else:
        allowed = plain_left if ld_ran and plain_status not in (0, None) else set()
    if new - allowed:
        return drive.Verdict(drive.LEFTOVER, f"status {status}, left {sorted(new - allowed)}")
    if status < 0 or status > 125:
        return drive.Verdict(drive.MALFORMED, f"exit status {status}")
    klp_error = "klp-ld: error:" in stderr
    if not klp_error and ld_ran:
        return drive.Verdict(drive.LD_ERROR, stderr.strip().splitlines()[0] if stderr.strip() else "")
    if status != 1:
        return drive.Verdict(drive.MALFORMED, f"exit status {status}\n{stderr[-2000:]}")
    problem = drive.diagnostic_problem(stderr, need_error=True) if not ld_ran else None
    if problem:
        return drive.Verdict(drive.MALFORMED, problem)
    first = next((ln for ln in stderr.splitlines() if ln.startswith("klp-ld: error:")), "")
    return drive.Verdict(REFUSED if plain_status == 0 else drive.CLEAN_ERROR, first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per run before it counts as a hang")
    parser.add_argument("--out", type=Path, default=None, help="where reproducers and the summary go")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated targets to draw from (default: all)")
    opts = parser.parse_args()
    out = opts.out or Path(tempfile.mkdtemp(prefix="klp-ld-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="klp-ld-fuzz-work-"))
    try:
        seeds = prepare_seeds(work)
        print("seeds: " + ", ".join(f"{t}: {len(v)}" for t, v in seeds.items() if t != "support"), flush=True)
        counts: collections.Counter[str] = collections.Counter()
        per_target: collections.Counter[tuple[str, str]] = collections.Counter()
        traits: collections.Counter[str] = collections.Counter()
        refusals: collections.Counter[str] = collections.Counter()
        bad: list[dict[str, object]] = []
        started = time.monotonic()
        ctx = multiprocessing.get_context("fork")
        wanted = set(opts.targets.split(","))
        seeds = {t: v for t, v in seeds.items() if t in wanted or t == "support"}
        with ctx.Pool(opts.jobs, initializer=_init, initargs=(seeds, work, opts.timeout)) as pool:
            tasks = ((opts.seed, i) for i in range(opts.runs))
            for done, result in enumerate(pool.imap_unordered(one_run, tasks, chunksize=4), 1):
                outcome = str(result["outcome"])
                counts[outcome] += 1
                per_target[(str(result["target"]), outcome)] += 1
                traits.update(str(t) for t in cast("list[str]", result.get("traits", [])))
                if outcome == REFUSED:
                    refusals[str(result["detail"]).split(": ", 2)[-1][:90]] += 1
                if outcome in BAD:
                    bad.append(result)
                    repro = out / f"crash-{result['index']}.json"
                    repro.write_text(json.dumps(result, indent=1))
                    print(f"!! run {result['index']}: {outcome} ({result['target']} {result['seed']} "
                          f"{result['mutations']}) -> {repro}", flush=True)
                if done % 500 == 0 or done == opts.runs:
                    rate = done / (time.monotonic() - started)
                    print(f"{done}/{opts.runs} runs, {rate:.1f}/s: " + ", ".join(
                        f"{k} {counts[k]}" for k in OUTCOMES if counts[k]), flush=True)
        summary = {"runs": opts.runs, "seed": opts.seed, "jobs": opts.jobs, "timeout": opts.timeout,
                   "seconds": round(time.monotonic() - started, 1), "outcomes": dict(counts),
                   "tracebacks": counts[drive.TRACEBACK] + counts[drive.INTERNAL],
                   "hangs": counts[drive.HANG],
                   "wrong outputs with status 0": counts[WRONG],
                   "traits": dict(sorted(traits.items())),
                   "refused (plain ld links them)": dict(refusals.most_common(12)),
                   "per_target": {f"{t} / {o}": n for (t, o), n in sorted(per_target.items())},
                   "bad": len(bad)}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        print(f"reproducers and summary in {out}")
        return 1 if bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
