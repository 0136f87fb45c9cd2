"""`python -m workers workers.process:start_worker_process --processes N --threads M`: Dramatiq's worker
command, with the product's logging set up first. `ingest worker` runs this, so the supervising process's own lines (start,
stop, a worker process that died) are structured and redacted like the workers' (which set up their own
logging at boot, in workers.middleware.lifecycle: a spawned process inherits none of this)."""

import sys

from dramatiq.cli import main, make_argument_parser

from ingest.config import Settings
from ingest.logs import configure_logging

if __name__ == "__main__":
    args = make_argument_parser().parse_args(sys.argv[1:])
    # Dramatiq reloads on SIGHUP by exec'ing sys.argv: make that this command again.
    sys.argv = [sys.executable, "-m", "workers", *sys.argv[1:]]
    configure_logging(Settings(), interactive=False, stdlib=True)
    sys.exit(main(args))
