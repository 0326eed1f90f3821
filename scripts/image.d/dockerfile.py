#!/usr/bin/env python3
"""Reads the facts of the Dockerfile's final stage for scripts/image, so that the image it assembles
and the checks it makes come from the Dockerfile itself and cannot drift from it.

    dockerfile.py final-stage DOCKERFILE OUT    # the global ARGs and the final stage, alone, into OUT
    dockerfile.py base DOCKERFILE               # the final stage's base image (its FROM)
    dockerfile.py binaries DOCKERFILE           # "SOURCE DEST" per COPY --from=build
    dockerfile.py entrypoint DOCKERFILE         # the ENTRYPOINT, one argument per line
    dockerfile.py check-cargo DOCKERFILE CARGO_TOML      # labels agree with [workspace.package]
    dockerfile.py check-image DOCKERFILE INSPECT_JSON    # `buildah inspect` agrees with the stage

Only what the final stage may hold is understood: FROM, ARG, LABEL, COPY --from=build, ENV, EXPOSE,
USER, WORKDIR, and ENTRYPOINT/CMD in exec form (there is no shell in distroless). Anything else there
is an error, so that a new instruction gets a check here rather than being ignored."""

import json
import re
import shlex
import sys
import tomllib

ALLOWED = {"FROM", "ARG", "LABEL", "COPY", "ENV", "EXPOSE", "USER", "WORKDIR", "ENTRYPOINT", "CMD"}


def fail(message):
    print(f"scripts/image: {message}", file=sys.stderr)
    sys.exit(1)


def instructions(path):
    """(keyword, rest, source lines) per instruction: comments dropped, continuations joined."""
    result, pending, lines = [], "", []
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if pending and line.lstrip().startswith("#"):
                continue
            lines.append(raw)
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            text = (pending + line).strip()
            pending = ""
            keyword, _, rest = text.partition(" ")
            result.append((keyword.upper(), rest.strip(), lines))
            lines = []
    return result


def stages(path):
    """The instructions before the first FROM (global ARGs) and those of the final stage."""
    every = instructions(path)
    froms = [i for i, (keyword, _, _) in enumerate(every) if keyword == "FROM"]
    if not froms:
        fail(f"{path} has no FROM")
    return every[: froms[0]], every[froms[-1] :]


def substitute(value, args):
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value
    )


def pairs(rest, args):
    """KEY=VALUE words (LABEL, ENV), quotes removed, ARGs substituted."""
    result = {}
    for word in shlex.split(rest):
        key, sep, value = word.partition("=")
        if not sep:
            fail(f"write KEY=VALUE, not the legacy 'KEY VALUE' form: {rest}")
        result[key] = substitute(value, args)
    return result


def exec_form(keyword, rest):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        fail(f"{keyword} must be in exec form (a JSON array): there is no shell in the image: {rest}")
    return value


def final_stage(path):
    """The final stage's facts, as a dict."""
    _, stage = stages(path)
    facts = {"labels": {}, "env": {}, "ports": set(), "binaries": [], "user": None,
             "workdir": None, "entrypoint": None, "cmd": None}
    args = {}
    for keyword, rest, _ in stage:
        if keyword not in ALLOWED:
            fail(f"the final stage has {keyword}: scripts/image.d/dockerfile.py does not know it")
        if keyword == "FROM":
            facts["base"] = rest.split()[0]
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif keyword == "LABEL":
            facts["labels"].update(pairs(rest, args))
        elif keyword == "ENV":
            facts["env"].update(pairs(rest, args))
        elif keyword == "EXPOSE":
            facts["ports"].update(p if "/" in p else p + "/tcp" for p in rest.split())
        elif keyword == "USER":
            facts["user"] = rest
        elif keyword == "WORKDIR":
            facts["workdir"] = rest
        elif keyword == "ENTRYPOINT":
            facts["entrypoint"] = exec_form(keyword, rest)
        elif keyword == "CMD":
            facts["cmd"] = exec_form(keyword, rest)
        elif keyword == "COPY":
            words = rest.split()
            if words[0] != "--from=build" or len(words) != 3 or not words[1].startswith("/out/"):
                fail(f"the final stage copies only the build stage's /out/BINARY DEST: COPY {rest}")
            facts["binaries"].append((words[1], words[2]))
    if facts["user"] is None or facts["entrypoint"] is None or not facts["binaries"]:
        fail("the final stage must have a USER, an ENTRYPOINT and the binaries")
    return facts


def check_cargo(dockerfile, cargo_toml):
    with open(cargo_toml, "rb") as f:
        package = tomllib.load(f)["workspace"]["package"]
    labels = final_stage(dockerfile)["labels"]
    want = {
        "org.opencontainers.image.version": package["version"],
        "org.opencontainers.image.source": package["repository"],
        "org.opencontainers.image.licenses": package["license"],
    }
    for key, value in want.items():
        if labels.get(key) != value:
            fail(f"Dockerfile label {key}={labels.get(key)!r}, Cargo.toml says {value!r}")


def check_image(dockerfile, inspect_json):
    facts = final_stage(dockerfile)
    with open(inspect_json) as f:
        config = json.load(f)["OCIv1"]["config"]
    errors = []

    def expect(what, got, want):
        if got != want:
            errors.append(f"{what}: the image has {got!r}, the Dockerfile says {want!r}")

    expect("user", config.get("User"), facts["user"])
    expect("entrypoint", config.get("Entrypoint"), facts["entrypoint"])
    expect("cmd", config.get("Cmd"), facts["cmd"])
    expect("exposed ports", set(config.get("ExposedPorts") or {}), facts["ports"])
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    for key, value in facts["env"].items():
        expect(f"env {key}", env.get(key), value)
    labels = config.get("Labels") or {}
    for key, value in facts["labels"].items():
        expect(f"label {key}", labels.get(key), value)
    if facts["workdir"] is not None:
        expect("workdir", config.get("WorkingDir"), facts["workdir"])
    if errors:
        fail("the image does not match the Dockerfile:\n  " + "\n  ".join(errors))


def main(argv):
    command, dockerfile, *rest = argv
    if command == "final-stage":
        head, stage = stages(dockerfile)
        with open(rest[0], "w") as out:
            for _, _, lines in head + stage:
                out.writelines(lines)
    elif command == "base":
        print(final_stage(dockerfile)["base"])
    elif command == "binaries":
        for source, dest in final_stage(dockerfile)["binaries"]:
            print(source, dest)
    elif command == "entrypoint":
        print("\n".join(final_stage(dockerfile)["entrypoint"]))
    elif command == "check-cargo":
        check_cargo(dockerfile, rest[0])
    elif command == "check-image":
        check_image(dockerfile, rest[0])
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
