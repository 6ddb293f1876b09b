"""``python -m antflow`` runs the demo (see ``antflow._demo``);
``python -m antflow pipeline`` the pipeline demo (``antflow._demo_pipeline``)."""

from __future__ import annotations

import sys

from ._demo import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["pipeline"]:
        from ._demo_pipeline import main as pipeline_demo

        sys.exit(pipeline_demo(sys.argv[2:]))
    sys.exit(main())
