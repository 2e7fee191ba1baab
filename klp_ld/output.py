"""Where a livepatch link's files go, and when: each is a regular file, complete, or nothing.

One policy for the module and for its side outputs (`-Map`, `--dependency-file`):

- ld writes into a temporary file and klp-ld commits it only after every check has passed, so a
  failure (ld's, klp-ld's, a signal) leaves no partial output and keeps a previous good one.
- The temporary file is created beside the final one, with a short fixed-length name (the final
  name may be as long as the file system allows), and renamed into place: the commit is atomic.
- The output is a regular file or nothing. ld opens an existing FIFO or device and writes into it
  (`-o /dev/null` works, as root it writes into the device); a rename would replace it with a
  regular file, so klp-ld refuses a non-regular output up front, naming what it is. A directory
  fails in ld too. A symbolic link is replaced by the file, as ld does (it unlinks the link).
- An output that is one of the inputs is refused, as ld refuses it (ld compares real paths);
  klp-ld also compares device and inode, which catches a hard link and keeps the in-place commit
  below from ever writing into an input.
- A directory where no file can be created but whose existing output is writable: ld cannot
  unlink the output there and writes into it. klp-ld does the same, but only at commit, after ld,
  the conversion and every check succeeded, with one write of the finished bytes. That commit is
  not atomic (it cannot be without a new file), which is what ld does in the same place.
- Side outputs are written by ld into klp-ld's temporary directory, their temporary names turned
  back into the user's, and committed with the module; `--dry-run` commits nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass

from klp_ld.diag import KlpLdError, fail

TEMP_PREFIX = ".klp-ld-"  # + 8 hex digits: 16 bytes whatever the final name's length
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


@dataclass(frozen=True, slots=True)
class Destination:
    """A file the link commits: `path` is where, `display` how the user named it."""

    path: str
    display: str
    follow: bool = False  # written through a symbolic link (fopen "w"), as ld writes side outputs


@dataclass(frozen=True, slots=True)
class Placed:
    """Where ld writes a target before the commit, and how the commit happens."""

    target: Destination
    temp: str
    in_place: bool  # no new file can be made beside it: the commit writes into the existing one


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_target(target: Destination, what: str) -> None:
    """Refuse a target that is not a regular file (or a link to be replaced), before any work."""
    try:
        st = os.stat(target.path) if target.follow else os.lstat(target.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise fail(f"cannot open {what} {target.display}: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    kind = _kind(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        raise fail(f"cannot open {what} {target.display}: Is a directory (ld fails the same way)")
    raise fail(f"{target.display}: the {what} is {kind}: ld would write the linked module into it, but "
               "klp-ld builds it in a temporary file and renames that into place, which would replace "
               f"{kind} with a regular file; name a regular file instead")


def check_not_input(target: Destination, inputs: list[tuple[str, str]]) -> None:
    """ld's "input file 'x' is the same as output file", by real path and by device and inode.

    `inputs` is (as the user named it, path) for every file ld reads.
    """
    out_real = os.path.realpath(target.path)
    try:
        out_st: os.stat_result | None = os.stat(target.path)
    except OSError:
        out_st = None
    for display, path in inputs:
        if os.path.realpath(path) == out_real:
            raise fail(f"input file '{display}' is the same as output file (ld refuses this too)")
        if out_st is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out_st.st_dev, out_st.st_ino):
            raise fail(f"input file '{display}' is the same file as output file {target.display} (a hard "
                       "link): klp-ld does not write an output that is one of its inputs")


def _name_limit(directory: str, name: str, target: Destination, what: str) -> None:
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return
    if len(os.fsencode(name)) > limit:
        raise fail(f"cannot open {what} {target.display}: File name too long")


def place(target: Destination, tmpdir: str, what: str = "output file") -> Placed:
    """Create the temporary file ld writes `target` into.

    Beside the target when the directory takes a new file; otherwise, when the target exists and
    is writable, in `tmpdir` for an in-place commit; otherwise the error ld would give.
    """
    path = os.path.realpath(target.path) if target.follow else target.path
    directory, name = os.path.split(path)
    directory = directory or "."
    _name_limit(directory, name, target, what)
    problem: OSError | None = None
    for _ in range(100):
        temp = os.path.join(directory, TEMP_PREFIX + os.urandom(4).hex())
        try:
            # 0666 & ~umask, as ld makes its outputs
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return Placed(Destination(path, target.display, target.follow), temp, False)
        except FileExistsError:
            continue
        except OSError as exc:
            problem = exc
            break
    if problem is not None and problem.errno in (errno.EACCES, errno.EPERM) and _writable(path):
        temp = os.path.join(tmpdir, "in-place-" + os.urandom(4).hex())
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        return Placed(Destination(path, target.display, target.follow), temp, True)
    why = problem.strerror if problem is not None and problem.strerror else "no temporary name is free"
    raise fail(f"cannot open {what} {target.display}: {why}")


def _writable(path: str) -> bool:
    """An existing regular file this process can open for writing (tested without truncating)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def commit(placed: Placed, what: str = "output file") -> None:
    """Move the finished temporary file into place (or write it into the existing file).

    A rename the directory refuses (another user's file under a sticky bit) falls back to writing
    into the file, as ld's unlink-then-open does there.
    """
    target = placed.target
    try:
        if not placed.in_place:
            try:
                os.replace(placed.temp, target.path)
                return
            except PermissionError:
                if not _writable(target.path):
                    raise
        with open(placed.temp, "rb") as f:
            data = f.read()
        fd = os.open(target.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise fail(f"{target.display}: the {what} is no longer a regular file; not written")
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.unlink(placed.temp)
    except KlpLdError:
        raise
    except OSError as exc:
        raise fail(f"cannot write: {exc.strerror or exc}", obj=target.display) from None


def map_target(value: str, output: str, cwd: str) -> Destination | None:
    """Where ld writes `-Map VALUE`, computed with the user's output name, as lexsup.c does.

    `%` stands for the output name (a trailing `%` adds `.map`), a directory gets `<output>.map`
    inside it; an empty name, `-` (stdout) and an existing non-regular file are left to ld, which
    ignores or handles them itself (None).
    """
    if not value or value == "-":
        return None
    if "%" in value:
        before, _, after = value.partition("%")
        name = before + output + (after or ".map")
    else:
        name = value
        try:
            st = os.stat(os.path.join(cwd, value))
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            name = value + ("" if value.endswith("/") else "/") + os.path.basename(output) + ".map"
        elif st is not None and not stat.S_ISREG(st.st_mode):
            return None
    return Destination(os.path.join(cwd, name), name, follow=True)


def check_report_path(path: str) -> None:
    """`--klp-report` must name a regular file (or nothing yet): a FIFO would block the link and
    a device would swallow or refuse the record after the output was written."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise fail(f"cannot write the report: {exc.strerror or exc}", obj=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"the report (--klp-report) is {_kind(st.st_mode)}; name a regular file", obj=path)


class Scratch:
    """The temporary files and directory of one link: everything `cleanup` removes.

    Registered while signals are blocked (see pipeline), so nothing klp-ld creates can escape it.
    """

    def __init__(self) -> None:
        self.tmpdir: str | None = None
        self.temps: list[str] = []

    def track(self, placed: Placed) -> Placed:
        self.temps.append(placed.temp)
        return placed

    def committed(self, placed: Placed) -> None:
        if placed.temp in self.temps:
            self.temps.remove(placed.temp)

    def cleanup(self, keep_tmpdir: bool) -> str | None:
        """Remove everything; returns the temporary directory when it was kept (--klp-keep-tmp)."""
        for temp in self.temps:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            except OSError:
                continue
        self.temps = []
        if self.tmpdir is None:
            return None
        if keep_tmpdir:
            return self.tmpdir
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return None
