"""Workloads back to YAML: a parsed Scenario as the text harness/workload.py reads.

The parsed form holds absolute addresses; the language writes ranges relative to a map's
current start, so the writer follows each map's start across fork and mremap exactly as
the validator does. `doc` is the plain-data form (what yaml.safe_load of the text gives);
generated and shrunk workloads are edited in that form and checked by parsing its text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness import schema, workload
from harness.workload import ARENA, Scenario

Doc = dict[str, Any]
MIB = 1 << 20
KIB = 1 << 10


def size_text(size: int) -> int | str:
    """A byte count as the language writes it: 2M, 2052K, or 0."""
    if size == 0:
        return 0
    if size % MIB == 0:
        return f"{size // MIB}M"
    if size % KIB == 0:
        return f"{size // KIB}K"
    return size


def setup_doc(setup: workload.Setup) -> Doc:
    out: Doc = {
        "thp_enabled": setup.thp_enabled,
        "thp_defrag": setup.thp_defrag,
        "shmem_enabled": setup.shmem_enabled,
    }
    if setup.fault_around_bytes != workload.DEFAULT_FAULT_AROUND_BYTES:
        out["fault_around_bytes"] = size_text(setup.fault_around_bytes)
    if setup.fault_around_whole_folio:
        out["fault_around_whole_folio"] = True
    if setup.mounts:
        out["mounts"] = [
            {"path": m.path, "size": size_text(m.size), "huge": m.huge} for m in setup.mounts
        ]
    return out


def scenario_doc(scenario: Scenario) -> Doc:
    """The plain-data form of a parsed scenario (ranges relative to each map's start)."""
    starts: dict[str, dict[str, int]] = {"main": {}}
    probes: dict[str, int] = {}  # probe label -> the address its range starts at
    steps: list[Doc] = []
    for step in scenario.steps:
        if isinstance(step, workload.Recall):
            args: Doc = {"label": step.label, "probe": step.probe}
            if step.addr != probes[step.probe]:
                args["offset"] = size_text(step.addr - probes[step.probe])
            steps.append({"recall": args})
            continue
        if isinstance(step, workload.Probe):
            probes[step.label] = step.addr
        steps.append({step.op: _step_args(step, starts)})
    doc: Doc = {"name": scenario.name}
    if scenario.description:
        doc["description"] = scenario.description
    doc["setup"] = setup_doc(scenario.setup)
    doc["steps"] = steps
    return doc


def _proc(args: Doc, proc: str) -> Doc:
    if proc != "main":
        args["proc"] = proc
    return args


def _step_args(step: workload.Step, starts: dict[str, dict[str, int]]) -> Doc:
    match step:
        case workload.Spawn():
            starts[step.proc] = {}
            return {"proc": step.proc}
        case workload.Fork():
            starts[step.child] = dict(starts[step.proc])
            return _proc({"child": step.child}, step.proc)
        case workload.Exit():
            return {"proc": step.proc}
        case workload.FileCreate():
            args: Doc = {"file": step.file, "kind": step.kind}
            if step.path is not None:
                args["path"] = step.path
            args["size"] = size_text(step.size)
            if step.populate != "none":
                args["populate"] = step.populate
            return args
        case workload.Mmap():
            starts[step.proc][step.map] = step.addr
            args = _proc({"map": step.map}, step.proc)
            args.update(length=size_text(step.length), at=size_text(step.addr - ARENA))
            if step.file is not None:
                args["file"] = step.file
                if step.file_offset:
                    args["file_offset"] = size_text(step.file_offset)
            if step.shared:
                args["shared"] = True
            if step.prot != "rw":
                args["prot"] = step.prot
            return args
        case workload.Open():
            return {"file": step.file, "of": step.of}
        case workload.Punch():
            return {
                "file": step.file,
                "offset": size_text(step.offset),
                "length": size_text(step.length),
            }
        case workload.DropCaches():
            return {}
    # Every other op works on a range of a map.
    proc, name = step.proc, step.map  # type: ignore[union-attr]
    start = starts[proc][name]
    args = {}
    if isinstance(step, workload.Probe):
        args["label"] = step.label
    args = _proc(args, proc)
    args["map"] = name
    offset = step.addr - start  # type: ignore[union-attr]
    if offset:
        args["offset"] = size_text(offset)
    args["length"] = size_text(step.length)  # type: ignore[union-attr]
    match step:
        case workload.Mremap():
            args["to"] = size_text(step.new_addr - ARENA)
            if step.new_map != step.map:
                args["as"] = step.new_map
                starts[proc][step.new_map] = step.new_addr
            else:
                starts[proc][name] = step.new_addr
        case workload.Mprotect():
            args["prot"] = step.prot
        case workload.Madvise():
            args["advice"] = step.advice
        case workload.Touch():
            if step.write:
                args["write"] = True
    return args


def _flow(value: Any) -> str:
    return str(
        yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20)
    ).strip()


def dump_docs(docs: list[Doc], header: str = "") -> str:
    """A workload file holding these scenarios, one step per line."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append("scenarios:")
    for doc in docs:
        lines.append(f"  - name: {doc['name']}")
        if doc.get("description"):
            text = yaml.safe_dump(doc["description"], width=88, default_style=">").strip()
            lines.append("    description: " + text.replace("\n", "\n      "))
        if doc.get("setup"):
            lines.append(f"    setup: {_flow(doc['setup'])}")
        lines.append("    steps:")
        for step in doc["steps"]:
            ((op, args),) = step.items()
            lines.append(f"      - {op}: {_flow(args) if args else '{}'}")
    return "\n".join(lines) + "\n"


def dump(scenarios: list[Scenario], header: str = "") -> str:
    return dump_docs([scenario_doc(sc) for sc in scenarios], header)


def parse_docs(docs: list[Doc], origin: Path) -> list[Scenario]:
    """Parse docs through the language's own parser; errors name `origin` and a line."""
    text = dump_docs(docs)
    node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    root = schema.Node(node, origin, "")
    return workload.parse_scenarios(schema.require(root.mapping(("scenarios",)), "scenarios", root))
