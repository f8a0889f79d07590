"""Runs seremotion-analyze as a Ray job: the batch's files are shared out as
tasks over the cluster's workers, each task runs seremotion-analyze on its
share, and the per-file results come back to the driver, which builds the same
results.jsonl, calls.csv and report.html as one local run would
(`seremotion-analyze merge`).

Called by scripts/analyze_on_ray.sh, which picks the project's virtualenv:

    analyze_on_ray.py OUT [--per-channel] [--customer-channel N] [--model FILE] INPUT...

The cluster is the one at $RAY_ADDRESS, or a local one started for this job.
Every worker must see the inputs (and --model) under the same paths as the
driver (shared storage), and have seremotion-analyze on PATH or at
$SEREMOTION_ANALYZE. Results travel through Ray's object store: the workers
need no shared output folder.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

# Files per task: small enough to balance the load, large enough that a
# task's start-up (one process, one model load) is paid rarely.
TASKS_PER_CPU = 4


def parse_args():
    p = argparse.ArgumentParser(
        prog="analyze_on_ray.sh",
        description="seremotion-analyze over a Ray cluster ($RAY_ADDRESS, or a local one)",
    )
    p.add_argument("out", metavar="OUT", help="output folder (new, or of an earlier run of this batch)")
    p.add_argument("--per-channel", action="store_true", help="one stream of results per channel")
    p.add_argument("--customer-channel", type=int, default=1, metavar="N")
    p.add_argument("--model", metavar="FILE", help="a seremotion ONNX model, readable on every worker")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders and @LIST files")
    return p.parse_args()


@ray.remote(num_cpus=1)
def analyse_share(analyzer, cwd, options, files):
    """Runs one seremotion-analyze over `files` (one pipeline: the task holds
    one CPU); returns its per-file result parts, its stderr and where it ran."""
    if not os.path.isdir(cwd):
        raise RuntimeError(
            f"{cwd}: the driver's working directory is not on this worker; "
            "give inputs under paths every node can read (shared storage)"
        )
    with tempfile.TemporaryDirectory(prefix="seremotion-task-") as tmp:
        listing = Path(tmp) / "files.txt"
        listing.write_text("".join(f + "\n" for f in files))
        out = Path(tmp) / "out"
        run = subprocess.run(
            [analyzer, "--jobs", "1", "--out", str(out), *options, f"@{listing}"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        # 2: the batch ran but some files failed; their parts say why.
        if run.returncode not in (0, 2):
            raise RuntimeError(f"seremotion-analyze failed on {ray.util.get_node_ip_address()}:\n{run.stderr}")
        parts = {p.name: p.read_bytes() for p in (out / "parts").glob("*.json")}
    return parts, run.stderr, ray.get_runtime_context().get_node_id()


def main():
    args = parse_args()
    analyzer = os.environ.get("SEREMOTION_ANALYZE", "seremotion-analyze")
    options = ["--per-channel"] if args.per_channel else []
    if args.model:
        options += ["--model", args.model]

    # The driver expands folders and lists once, exactly as a local run does.
    listed = subprocess.run(
        [analyzer, "--list-files", *args.inputs], capture_output=True, text=True
    )
    if listed.returncode != 0:
        sys.exit(listed.stderr.strip() or f"{analyzer} --list-files failed")
    files = listed.stdout.splitlines()
    if not files:
        sys.exit(f"no audio files found in {' '.join(args.inputs)}")

    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # A local cluster on the loopback interface, gone when the job ends.
        # (Ray replaces 127.0.0.1 with the machine's outward address; other
        # loopback addresses it takes as given.)
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.2")
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_tasks = min(len(files), cpus * TASKS_PER_CPU)
    shares = [files[i::n_tasks] for i in range(n_tasks)]
    print(
        f"[ray] {len(files)} files in {n_tasks} tasks over {len(ray.nodes())} nodes ({cpus} CPUs)",
        file=sys.stderr,
    )

    parts_dir = Path(args.out) / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    # Each share is pinned (softly: a node that goes away hands it on) to a
    # node, in proportion to the nodes' CPUs. Ray's own strategies, SPREAD
    # included, keep reusing the driver's node while its workers are free,
    # so a batch of quick files would never leave it.
    slots = [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"]
        for _ in range(int(node["Resources"].get("CPU", 0)))
    ]
    pending = [
        analyse_share.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(slots[i % len(slots)], soft=True)
            if slots
            else "DEFAULT"
        ).remote(analyzer, os.getcwd(), options, share)
        for i, share in enumerate(shares)
    ]
    nodes = set()
    done = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        parts, stderr, node = ray.get(ready[0])
        nodes.add(node)
        for name, data in parts.items():
            # Atomic, like the analyser's own parts: a reader never sees half a file.
            tmp = parts_dir / f".{name}.tmp{os.getpid()}"
            tmp.write_bytes(data)
            tmp.replace(parts_dir / name)
        done += len(parts)
        for line in stderr.splitlines():
            if line.startswith("[") and "failed:" in line:
                print(f"[ray] {line.split('] ', 1)[-1]}", file=sys.stderr)
        print(f"[ray] {done}/{len(files)} files", file=sys.stderr)
    print(f"[ray] tasks ran on {len(nodes)} nodes", file=sys.stderr)
    ray.shutdown()

    # Only this batch's files: OUT may hold parts of earlier batches.
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listed_files:
        listed_files.write("".join(f + "\n" for f in files))
        listed_files.flush()
        merged = subprocess.run(
            [
                analyzer, "merge", "--out", args.out,
                "--customer-channel", str(args.customer_channel),
                "--files", listed_files.name,
            ]
        )
    sys.exit(merged.returncode)


if __name__ == "__main__":
    main()
