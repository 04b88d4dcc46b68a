"""Read a host's Nix profile (``P``, ``P-<N>-link``) into ``Generation`` records."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenerationError, shown
from ..smallfile import FileTooLarge, NotRegularFile, read_small_file
from .bootspec import BootSpecProblem, link_name, parse_bootspec, parse_kernel_params, parse_link_name
from .store import StoreCache, StoreRoots, atomic_symlink


@dataclass(frozen=True)
class Generation:
    """One generation of a Nix profile and what its boot files are."""

    number: int
    link: Path
    created: float                       # link mtime, seconds since the epoch
    toplevel: Path | None = None         # resolved store path
    label: str = ""
    system: str = ""
    kernel: Path | None = None           # resolved, inside the store
    initrd: Path | None = None
    init: str = ""                       # as the kernel sees it: <toplevel>/init
    kernel_params: tuple[str, ...] = ()
    dtbs: Path | None = None             # resolved dtbs/ directory, if any
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems and self.kernel is not None and self.initrd is not None and bool(self.init)


@dataclass(frozen=True)
class Profile:
    """A host's Nix profile: its generations and the current one."""

    path: Path
    generations: tuple[Generation, ...] = ()     # ascending by number
    current: int | None = None                   # what the profile link points to
    problems: tuple[str, ...] = field(default=())

    def get(self, number: int) -> Generation | None:
        for gen in self.generations:
            if gen.number == number:
                return gen
        return None

    @property
    def valid(self) -> tuple[Generation, ...]:
        return tuple(g for g in self.generations if g.valid)


def read_profile(profile: Path, roots: StoreRoots, cache: StoreCache | None = None) -> Profile:
    """Every ``<profile>-<N>-link`` beside ``profile``, and which one is current."""
    directory, name = profile.parent, profile.name
    problems: list[str] = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return Profile(profile, problems=(f"profile directory {directory} does not exist",))
    except OSError as exc:
        return Profile(profile, problems=(f"cannot list {directory}: {exc.strerror}",))
    numbered = sorted((n, e) for e in entries if (n := parse_link_name(name, e)) is not None)
    def read(link: Path, n: int) -> Generation:
        if cache is None:
            return read_generation(link, n, roots)
        return cache.generation(link, n, lambda: read_generation(link, n, roots),  # type: ignore[return-value]
                                _files_present)

    generations = tuple(read(directory / entry, n) for n, entry in numbered)
    current = None
    try:
        target = os.readlink(profile)
    except FileNotFoundError:
        if generations:
            problems.append(f"profile link {profile} is missing")
    except OSError as exc:
        problems.append(f"profile {profile} is not a symlink ({exc.strerror})")
    else:
        # A link name counts only in the profile's own directory: P -> /elsewhere/P-2-link is not
        # P's generation 2.
        link_directory = os.path.dirname(os.path.join(directory, target))
        in_directory = os.path.realpath(link_directory) == os.path.realpath(directory)
        current = parse_link_name(name, os.path.basename(target)) if in_directory else None
        if current is None:
            # A profile pointing straight at a store path (not nix-env's layout).
            real = os.path.realpath(profile)
            current = next((g.number for g in generations if g.toplevel and str(g.toplevel) == real), None)
            if current is None:
                problems.append(f"profile {profile} points to {target}, which is no generation of it")
        elif not any(g.number == current for g in generations):
            problems.append(f"profile {profile} points to missing generation {current}")
            current = None
    return Profile(profile, generations, current, tuple(problems))


def _files_present(gen: object) -> bool:
    """The store paths a (cached) generation serves still exist."""
    assert isinstance(gen, Generation)
    return all(os.path.exists(p) for p in (gen.toplevel, gen.kernel, gen.initrd, gen.init, gen.dtbs) if p)


def read_generation(link: Path, number: int, roots: StoreRoots) -> Generation:
    """Validate one generation; problems are recorded, never raised."""
    try:
        created = link.lstat().st_mtime
    except OSError:
        created = 0.0
    base = Generation(number=number, link=link, created=created)
    try:
        toplevel = roots.resolve(link)
    except GenerationError as exc:
        return _with(base, problems=(str(exc),))
    if not toplevel.is_dir():
        return _with(base, toplevel=toplevel, problems=(f"{toplevel} is not a directory (not a NixOS system)",))
    try:
        fields = _toplevel_fields(toplevel, roots)
    except GenerationError as exc:
        return _with(base, toplevel=toplevel, problems=(str(exc),))
    return _with(base, toplevel=toplevel, **fields)


def _with(gen: Generation, **changes: object) -> Generation:
    from dataclasses import replace

    return replace(gen, **changes)


# Bounds on what a toplevel's small files may hold: NixOS writes a few hundred bytes in each.
# Reading is bounded so a huge file costs neither memory nor time, only a listed problem.
MAX_TEXT_FILE = 64 * 1024
MAX_BOOTSPEC = 1024 * 1024     # boot.json with every specialisation's bootspec in it
LABEL_LENGTH = 100


def _toplevel_fields(toplevel: Path, roots: StoreRoots) -> dict[str, object]:
    problems: list[str] = []
    bootspec_file = toplevel / "boot.json"
    if os.path.lexists(bootspec_file):
        try:
            spec = parse_bootspec(_read_store_text(roots, bootspec_file, MAX_BOOTSPEC))
        except BootSpecProblem as exc:
            raise GenerationError(f"{bootspec_file}: {exc}") from exc
        kernel_raw, initrd_raw, init = Path(spec.kernel), Path(spec.initrd), spec.init
        params, label, system = spec.kernel_params, spec.label, spec.system
    else:
        kernel_raw, initrd_raw, init = toplevel / "kernel", toplevel / "initrd", f"{toplevel}/init"
        try:
            params = parse_kernel_params(_read_store_text(roots, toplevel / "kernel-params", MAX_TEXT_FILE))
        except FileNotFoundError:
            params = ()
        label = _read_small(roots, toplevel / "nixos-version") or _label_from_name(toplevel.name)
        system = _read_small(roots, toplevel / "system")
    kernel = _store_file(roots, kernel_raw, "kernel", problems)
    initrd = _store_file(roots, initrd_raw, "initrd", problems)
    problems += _init_problems(roots, init)
    problems += [f"kernel parameter {shown(p)} has a control character (a boot file line would break there)"
                 for p in params if not p.replace(" ", "").isprintable()]
    dtbs = None
    if os.path.lexists(toplevel / "dtbs"):
        try:
            dtbs = roots.resolve(toplevel / "dtbs")
        except GenerationError as exc:
            problems.append(f"dtbs: {exc}")
        else:
            if not dtbs.is_dir():
                problems.append(f"dtbs: {toplevel}/dtbs is not a directory")
                dtbs = None
    return dict(
        kernel=kernel, initrd=initrd, init=init, kernel_params=tuple(params),
        label=one_line(label, LABEL_LENGTH), system=one_line(system, LABEL_LENGTH), dtbs=dtbs,
        problems=tuple(problems),
    )


def _init_problems(roots: StoreRoots, init: str) -> list[str]:
    """``init=<path>`` is one kernel parameter: a path with whitespace or control characters
    cannot be one, and it must be a file in the store."""
    if not init:
        return ["no init"]
    if not init.isprintable() or " " in init:
        return [f"init: {shown(init)} cannot be passed as one kernel parameter (whitespace or a control character)"]
    try:
        real = roots.resolve(init)
    except GenerationError as exc:
        return [f"init: {exc}"]
    return [] if real.is_file() else [f"init: {init} is not a regular file"]


def _store_file(roots: StoreRoots, path: Path, what: str, problems: list[str]) -> Path | None:
    try:
        real = roots.resolve(path)
    except GenerationError as exc:
        problems.append(f"{what}: {exc}")
        return None
    try:
        info = real.stat()
    except OSError as exc:
        problems.append(f"{what}: {path}: {exc.strerror}")
        return None
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{what}: {path} is not a regular file")
        return None
    if info.st_size == 0:
        problems.append(f"{what}: {path} is empty (a truncated copy?)")
        return None
    return real


def _read_store_text(roots: StoreRoots, path: Path, limit: int) -> str:
    """A small UTF-8 text file of a toplevel, read only if it resolves inside the store (its
    contents go into files served to clients) and is a regular file, at most ``limit`` bytes.
    ``FileNotFoundError`` when it does not exist at all; ``GenerationError`` otherwise."""
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    real = roots.resolve(path)
    try:
        data = read_small_file(real, limit, follow=False)
    except NotRegularFile:
        raise GenerationError(f"{path} is not a regular file") from None
    except FileTooLarge:
        raise GenerationError(f"{path} is over {limit} bytes (not what NixOS writes there)") from None
    except OSError as exc:
        raise GenerationError(f"{path} unreadable: {exc.strerror}") from None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise GenerationError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _read_small(roots: StoreRoots, path: Path) -> str:
    try:
        return _read_store_text(roots, path, MAX_TEXT_FILE)
    except (OSError, GenerationError):
        return ""


def one_line(text: str, limit: int) -> str:
    """Display text for menus and listings: control characters and runs of whitespace become
    one space, cut at ``limit`` characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def _label_from_name(store_name: str) -> str:
    # "<hash>-nixos-system-<host>-<version>" → "<version>"
    _, _, rest = store_name.partition("-")
    return rest.rsplit("-", 1)[-1] if rest.startswith("nixos-system-") else rest


def register_generation(profile: Path, toplevel: Path, roots: StoreRoots) -> int:
    """Add ``toplevel`` as the profile's next generation; return its number.

    The toplevel is validated first (inside the store, kernel/initrd/init
    present).  ``nix-env -p P --set`` is used when nix is installed, so Nix's
    own bookkeeping stays right; otherwise the same links are made directly.
    """
    real = roots.resolve(toplevel)
    if not real.is_dir():
        raise GenerationError(f"{toplevel} is not a directory (expected a NixOS system toplevel)")
    fields = _toplevel_fields(real, roots)
    if fields["problems"]:
        raise GenerationError(f"{toplevel} is not a bootable NixOS system: {'; '.join(fields['problems'])}")
    if not profile.parent.is_dir():
        raise GenerationError(f"profile directory {profile.parent} does not exist")
    existing = read_profile(profile, roots)
    current = existing.get(existing.current) if existing.current is not None else None
    if current and current.toplevel == real:
        return current.number  # already the current generation: nothing to add
    import shutil
    import subprocess   # only for adding a generation: not on every start

    nix_env = shutil.which("nix-env")
    # nix-env only knows the real store; a test store under /tmp gets plain links.
    if nix_env and real.is_relative_to("/nix/store"):
        result = subprocess.run([nix_env, "-p", str(profile), "--set", str(real)], capture_output=True, text=True)
        if result.returncode != 0:
            raise GenerationError(f"nix-env --set failed: {result.stderr.strip()}")
        return read_profile(profile, roots).current or 0
    number = max((g.number for g in existing.generations), default=0) + 1
    while True:
        # Never over an existing link: a register running at the same time may have just
        # taken this number (its generation would silently become ours).
        try:
            os.symlink(str(real), profile.parent / link_name(profile.name, number))
            break
        except FileExistsError:
            number += 1
        except OSError as exc:
            raise GenerationError(f"cannot add generation {number} to {profile}: {exc.strerror}") from exc
    atomic_symlink(link_name(profile.name, number), profile)
    return number
