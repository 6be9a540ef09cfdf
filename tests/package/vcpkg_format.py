#!/usr/bin/env python3
"""Checks that vcpkg manifests are in the canonical form `vcpkg format-manifest` writes, without vcpkg.

The rules, read from vcpkg-tool's serializer (serialize_manifest in src/vcpkg/sourceparagraph.cpp, the
canonicalization above it, and Json::stringify in src/vcpkg/base/json.cpp):
- 2-space indentation, every array element and object member on its own line, ": " after a key,
  "[]"/"{}" when empty, UTF-8 as is (control characters escaped), one newline at the end;
- top-level keys in this order: "$..." comments (sorted), "vcpkg-configuration", "name", the version
  field, "port-version" (only when not 0), "maintainers", "contacts", "summary", "description",
  "homepage", "documentation", "license", "supports", "builtin-baseline", "dependencies",
  "default-features", "features", "overrides";
- a one-line description is a string, a longer one an array of strings;
- dependencies sorted by name (then platform, then the number of features); a dependency with only
  a name is a plain string, otherwise an object keyed "$..." (sorted), "name", "host" (only when
  true), "default-features" (only when false), "features" (sorted), "platform", "version>=";
- features sorted by name, each keyed "$..." (sorted), "description", "supports", "license",
  "dependencies".
vcpkg-configuration.json (Configuration::serialize in src/vcpkg/configuration.cpp): "$..." comments,
"default-registry", "registries", "overlay-ports", "overlay-triplets", then the rest; each registry
(RegistryConfig::serialize) keyed "kind", "baseline", "location", "name", "path", "reference",
"repository", "packages".
Platform expressions ("supports", "platform") are compared as written.

Usage: vcpkg_format.py FILE...   (exit 1 and a diff for each file not in canonical form;
       --write rewrites them instead)
"""
import difflib
import json
import sys

VERSION_FIELDS = ("version", "version-semver", "version-date", "version-string")
TOP = (["vcpkg-configuration", "name", *VERSION_FIELDS, "port-version", "maintainers", "contacts", "summary",
        "description", "homepage", "documentation", "license", "supports", "builtin-baseline", "dependencies",
        "default-features", "features", "overrides"])
CONFIG_TOP = ["default-registry", "registries", "overlay-ports", "overlay-triplets"]
REGISTRY = ["kind", "baseline", "location", "name", "path", "reference", "repository", "packages"]


def ordered(obj, order):
    """obj's members: "$" comments sorted first, then the known keys in order, then any others."""
    out = {k: obj[k] for k in sorted(k for k in obj if k.startswith("$"))}
    out.update({k: obj[k] for k in order if k in obj})
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def paragraph(value):
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def feature_name(f):
    return (f, "") if isinstance(f, str) else (f["name"], f.get("platform", ""))


def dependency(dep):
    if isinstance(dep, str):
        return dep
    dep = dict(dep)
    if dep.get("host") is False:
        del dep["host"]
    if dep.get("default-features") is True:
        del dep["default-features"]
    if "features" in dep:
        dep["features"] = sorted(dep["features"], key=feature_name)
        if not dep["features"]:
            del dep["features"]
    if set(dep) == {"name"}:
        return dep["name"]
    return ordered(dep, ["name", "host", "default-features", "features", "platform", "version>="])


def dependency_key(dep):
    if isinstance(dep, str):
        return (dep, "", 0, [])
    return (dep["name"], dep.get("platform", ""), len(dep.get("features", [])), [feature_name(f) for f in dep.get("features", [])])


def dependencies(deps):
    return sorted((dependency(d) for d in deps), key=dependency_key)


def manifest(m):
    m = dict(m)
    if m.get("port-version") == 0:
        del m["port-version"]
    for key in ("description", "summary", "maintainers"):
        if key in m:
            m[key] = paragraph(m[key])
    if "dependencies" in m:
        m["dependencies"] = dependencies(m["dependencies"])
    if "default-features" in m:
        m["default-features"] = sorted(m["default-features"], key=feature_name)
    if "features" in m:
        features = {}
        for name in sorted(m["features"]):
            f = dict(m["features"][name])
            f["description"] = paragraph(f.get("description", []))
            if "dependencies" in f:
                f["dependencies"] = dependencies(f["dependencies"])
            features[name] = ordered(f, ["description", "supports", "license", "dependencies"])
        m["features"] = features
    if "vcpkg-configuration" in m:
        m["vcpkg-configuration"] = configuration(m["vcpkg-configuration"])
    return ordered(m, TOP)


def configuration(c):
    c = dict(c)
    if isinstance(c.get("default-registry"), dict):
        c["default-registry"] = ordered(c["default-registry"], REGISTRY)
    if "registries" in c:
        c["registries"] = [ordered(r, REGISTRY) for r in c["registries"]]
    return ordered(c, CONFIG_TOP)


def canonical(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if path.endswith("vcpkg-configuration.json"):
        data = configuration(data)
    else:
        data = manifest(data)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(args):
    write = "--write" in args
    failed = 0
    for path in (a for a in args if a != "--write"):
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        want = canonical(path)
        if text == want:
            continue
        if write:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(want)
            print(f"rewrote {path}")
            continue
        failed += 1
        print(f"{path} is not in vcpkg's canonical form (vcpkg format-manifest would rewrite it):")
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), want.splitlines(True), path, "canonical"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
