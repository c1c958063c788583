#!/usr/bin/env bash
# The job wrapper of condor/scrape.sub (and of merge.sub and verify.sub): runs one idrcell
# subcommand, e.g. `scrape.sh stage --experiments list.csv --study S --container C --out OUT ...`,
# and hands its exit code to HTCondor:
#   0  done
#   1  transient failure (IDR unreachable, images that kept failing): scrape.sub retries the job,
#      and the rerun resumes where this one stopped
#   2  bad input that no rerun fixes (a broken list, an unknown container): scrape.sub holds the job
# A job killed by a signal (evicted, or the node went down) is retried as well.
#
# Environment (set by the submit files):
#   IDRCELL_BIN             the idrcell executable on this node (default: idrcell on PATH)
#   IDRCELL_FILE_TRANSFER   true when HTCondor transfers files: the list and OUT/staging then live in
#                           this job's scratch directory at the same relative paths as on the submit side
set -u

idrcell="${IDRCELL_BIN:-idrcell}"
if ! command -v "$idrcell" >/dev/null 2>&1; then
    echo "scrape.sh: cannot run '$idrcell' on $(uname -n): install idrcell-builder on the execute" \
        "nodes or submit with idrcell=/path/to/bin/idrcell" >&2
    exit 2
fi

if [ "${IDRCELL_FILE_TRANSFER:-false}" = "true" ]; then
    previous=""
    for argument in "$@"; do
        case "$previous" in
            --experiments | --out)
                case "$argument" in
                    /*)
                        echo "scrape.sh: with file_transfer=true, $previous must be a path relative to" \
                            "the submit directory, not $argument" >&2
                        exit 2
                        ;;
                esac
                # transfer_output_files names OUT/staging: make it exist even if the stage fails early,
                # so that a failed transfer does not hide the stage's own exit code.
                if [ "$previous" = "--out" ]; then
                    mkdir -p -- "$argument/staging" || exit 1
                fi
                ;;
        esac
        previous="$argument"
    done
fi

exec "$idrcell" "$@"
