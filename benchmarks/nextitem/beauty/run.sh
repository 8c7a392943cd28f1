#!/usr/bin/env bash
# Runs (or resumes) the Amazon Beauty next-item benchmark in the background, from a wheel of one pinned
# commit installed apart from the working tree, so that editing the code while it runs changes nothing.
#
#   benchmarks/nextitem/beauty/run.sh [COMMIT [--set KEY=VALUE ...]]   # from the repository root
#
# COMMIT: default PINNED below; what follows it goes to the bench (e.g. --set workers=1 to keep a core free).
#
# Needs the data at data/amazon-beauty (interactions.tsv, item_attributes.json; a link is enough) and the
# project's .venv (make install). The trial cache is benchmarks/nextitem/beauty/trials (bench.yaml): each
# finished trial is a small JSON there; commit them and a run on another machine, from the same commit,
# takes them instead of training again. Log: runs/bench-nextitem-beauty.log.
set -euo pipefail
PINNED=df48737
COMMIT=${1:-$PINNED}
shift $(( $# > 0 ? 1 : 0 ))
E=runs/bench-env-$COMMIT
if [ ! -x "$E/env/bin/python" ]; then
    rm -rf "$E" && mkdir -p "$E/source"
    git archive "$COMMIT" features embeddings ranking jobs pyproject.toml setup.py README.md | tar -x -C "$E/source"
    .venv/bin/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$E/dist" "$PWD/$E/source"
    .venv/bin/python -m venv --without-pip "$E/env"
    # the wheel's dependencies are the project's own, already in .venv
    .venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
        > "$("$E/env/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/deps.pth"
    .venv/bin/python -m pip --python "$E/env/bin/python" install --quiet --no-deps --no-index "$E"/dist/pyramid_mixer-*.whl
fi
nohup "$E/env/bin/python" -m pyramid_mixer.jobs.bench.next_item --config benchmarks/nextitem/beauty/bench.yaml "$@" \
    > runs/bench-nextitem-beauty.log 2>&1 &
echo "bench running from commit $COMMIT (pid $!); log: runs/bench-nextitem-beauty.log"
