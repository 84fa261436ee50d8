#!/usr/bin/env bash
# Start redq workers as a Slurm job array: one worker per array task.
#
#   sbatch --array=1-20 slurm-workers.sh myproject
#
# The server URL (with its password) must be in the environment, not on the
# command line: put `export REDIS_URL=rediss://:PASSWORD@redis-host:6380/0`
# (and REDQ_SECRET, if payloads are signed) in a file only you can read and
# source it in your shell before sbatch; Slurm passes the environment on.
#SBATCH --job-name=redq-workers
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --output=redq-worker-%A_%a.log
set -euo pipefail
namespace="${1:?usage: sbatch --array=1-N slurm-workers.sh NAMESPACE [QUEUES]}"
queues="${2:-default}"
: "${REDIS_URL:?REDIS_URL must be set in the environment sbatch runs from}"

# worker_script() copies the launcher out of the installed package
launcher=$(Rscript -e 'cat(system.file("bin", "redq-worker", package = "redq"))')
# when Slurm ends the job (time limit, scancel) or the node dies, the
# worker's lease runs out and its task runs on another worker
exec "$launcher" --url-from-env --queue "$queues" \
  --name "slurm-${SLURM_ARRAY_JOB_ID:-0}-${SLURM_ARRAY_TASK_ID:-0}" "$namespace"
