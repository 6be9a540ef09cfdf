#!/usr/bin/env python3
"""What can be checked of the vcpkg port and the Conan recipe without vcpkg or Conan (run by
check_recipes.sh from the source folder; prints FAIL lines, exits 1 on any).

- vcpkg: the port's "supports" is no broader than LibTorch's own port (evaluated on every platform
  vcpkg's identifiers describe), it has the "compiled" and "tools" features and a homepage, the
  portfile builds release only where the port is header-only and downloads the release archive with
  a real SHA512.
- Conan: the recipe, loaded with stand-ins for Conan's classes, is run through configure(),
  requirements(), validate(), package_id() and generate() for each combination of its options.
"""
import ast
import itertools
import re
import sys
import types

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL " + what)


# --- vcpkg platform expressions -------------------------------------------------------------------
# LibTorch's port, microsoft/vcpkg ports/libtorch/vcpkg.json (2.13.0, August 2026).
LIBTORCH_SUPPORTS = "(windows & !static) | osx | linux"


def evaluate(expr, ids):
    tokens = re.findall(r"[a-z0-9_-]+|[!&|,()]", expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def unary():
        t = take()
        if t == "!":
            return not unary()
        if t == "(":
            v = disjunction()
            assert take() == ")", expr
            return v
        return t in ids

    def conjunction():
        v = unary()
        while peek() in ("&", ","):
            take()
            v = unary() and v
        return v

    def disjunction():
        v = conjunction()
        while peek() == "|":
            take()
            v = conjunction() or v
        return v

    v = disjunction()
    assert pos == len(tokens), expr
    return v


def platforms():
    systems = [{"windows"}, {"windows", "uwp"}, {"linux"}, {"osx"}, {"android"}, {"freebsd"}, {"ios"}, {"emscripten"},
               {"windows", "mingw"}]
    for system, arch, static in itertools.product(systems, ["x64", "x86", "arm64", "arm", "wasm32"], [False, True]):
        yield system | {arch} | ({"static"} if static else set()) | ({"native"} if arch == "x64" else set())


def check_vcpkg(version, homepage):
    import json
    port = json.load(open("ports/statedict/vcpkg.json"))
    supports = port.get("supports", "")
    check(bool(supports), "vcpkg.json has no \"supports\" (LibTorch's port does not build everywhere)")
    if supports:
        broader = [sorted(p) for p in platforms() if evaluate(supports, p) and not evaluate(LIBTORCH_SUPPORTS, p)]
        check(not broader, f"vcpkg.json supports {supports!r} where libtorch ({LIBTORCH_SUPPORTS!r}) does not: {broader[:3]}")
    check(port.get("homepage") == homepage, f"vcpkg.json homepage {port.get('homepage')!r} is not the project's {homepage!r}")
    check(set(port.get("features", {})) >= {"compiled", "tools"}, "vcpkg.json lacks the compiled or tools feature")
    portfile = open("ports/statedict/portfile.cmake").read()
    check(re.search(r'if\("compiled" IN_LIST FEATURES\)[^()]*\([^)]*\)\s*else\(\)\s*set\(VCPKG_BUILD_TYPE release\)', portfile) is not None,
          "portfile: VCPKG_BUILD_TYPE release is not set where the port is header-only")
    m = re.search(r"^set\(STATEDICT_RELEASE_SHA512 ([0-9a-f]+)\)", portfile, re.M)
    check(m is not None and len(m.group(1)) == 128, "portfile: STATEDICT_RELEASE_SHA512 is not a SHA512")
    check(re.search(r"SHA512 0\b", portfile) is None, "portfile: SHA512 0")
    check(f'URLS "{homepage}/releases/download/v${{VERSION}}/statedict-${{VERSION}}.tar.gz"' in portfile,
          "portfile: the release archive's URL is not under the project's homepage")
    check("STATEDICT_LOCAL_SOURCE_HASHED" in portfile and "VCPKG_HASH_ADDITIONAL_FILES" in open("ports/statedict-local-source.cmake").read(),
          "the local-source mode does not put the checkout into the package's ABI")


# --- Conan ----------------------------------------------------------------------------------------
class Invalid(Exception):
    pass


def conan_stand_ins(log):
    """Modules with the names the recipe imports; each records what the recipe does with it."""
    conan = types.ModuleType("conan")

    class ConanFile:
        pass

    conan.ConanFile = ConanFile
    errors = types.ModuleType("conan.errors")
    errors.ConanInvalidConfiguration = Invalid
    build = types.ModuleType("conan.tools.build")
    build.check_min_cppstd = lambda self, v: log.append(("check_min_cppstd", str(v)))
    build.can_run = lambda self: True
    cmake = types.ModuleType("conan.tools.cmake")

    class CMakeDeps:
        def __init__(self, conanfile):
            pass

        def generate(self):
            log.append(("CMakeDeps",))

    class CMakeToolchain:
        def __init__(self, conanfile):
            self.cache_variables = {}

        def generate(self):
            log.append(("CMakeToolchain", dict(self.cache_variables)))

    cmake.CMakeDeps, cmake.CMakeToolchain = CMakeDeps, CMakeToolchain
    cmake.CMake = object
    cmake.cmake_layout = lambda *a, **k: None
    files = types.ModuleType("conan.tools.files")
    files.copy = lambda *a, **k: None
    tools = types.ModuleType("conan.tools")
    return {"conan": conan, "conan.errors": errors, "conan.tools": tools, "conan.tools.build": build,
            "conan.tools.cmake": cmake, "conan.tools.files": files}


def check_conan(version, homepage):
    log = []
    sys.modules.update(conan_stand_ins(log))
    namespace = {}
    exec(compile(open("conan/conanfile.py").read(), "conan/conanfile.py", "exec"), namespace)
    Recipe = namespace["StatedictConan"]
    check(Recipe.version == version, f"conanfile.py version {Recipe.version} is not {version}")
    check(Recipe.homepage == homepage, f"conanfile.py homepage {Recipe.homepage!r} is not the project's {homepage!r}")
    check(Recipe.options == {"compiled": [True, False], "tools": [True, False]}, f"conanfile.py options: {Recipe.options}")
    for compiled, tools in itertools.product([False, True], repeat=2):
        what = f"conanfile.py with compiled={compiled} tools={tools}"
        r = Recipe()
        r.options = types.SimpleNamespace(compiled=compiled, tools=tools)
        r.settings = types.SimpleNamespace(os="Linux")
        r.ref = "statedict/" + version
        r.configure()
        want = "static-library" if compiled else "unknown" if tools else "header-library"
        check(r.package_type == want, f"{what}: package_type {r.package_type}, not {want}")
        requires = []
        r.requires = lambda ref, **traits: requires.append((ref.split("/")[0], traits))
        r.requirements()
        names = {n: t for n, t in requires}
        check({"libtorch", "nlohmann_json"} <= set(names), f"{what}: requires {sorted(names)}")
        check(names.get("libtorch", {}).get("transitive_headers") and names.get("nlohmann_json", {}).get("transitive_headers"),
              f"{what}: LibTorch's and nlohmann's headers are not passed on to the users (transitive_headers)")
        check(("cli11" in names) == tools, f"{what}: cli11 required {'without' if tools else 'with'}out the tool")
        log.clear()
        r.validate()
        check(("check_min_cppstd", "17") in log, f"{what}: validate() does not check_min_cppstd(self, 17)")
        r.settings.os = "Windows"
        try:
            r.validate()
            check(False, f"{what}: validate() accepts Windows")
        except Invalid:
            pass
        cleared = []
        r.info = types.SimpleNamespace(options=r.options, clear=lambda: cleared.append(True))
        r.package_id()
        check(bool(cleared) == (not compiled and not tools), f"{what}: package_id {'not ' if not cleared else ''}cleared")
        log.clear()
        r.generate()
        check(("CMakeDeps",) in log, f"{what}: generate() does not generate CMakeDeps")
        tc = [e[1] for e in log if e[0] == "CMakeToolchain"]
        check(len(tc) == 1 and tc[0].get("STATEDICT_BUILD_COMPILED") == compiled and tc[0].get("STATEDICT_BUILD_TOOLS") == tools,
              f"{what}: CMakeToolchain's STATEDICT_BUILD_COMPILED/TOOLS do not follow the options: {tc}")


def main():
    version = sys.argv[1]
    homepage = re.search(r'HOMEPAGE_URL "([^"]+)"', open("CMakeLists.txt").read()).group(1)
    check_vcpkg(version, homepage)
    check_conan(version, homepage)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
