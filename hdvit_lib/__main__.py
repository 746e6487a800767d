"""``python -m hdvit_lib`` (and ``torchrun -m hdvit_lib``): see :mod:`hdvit_lib.cli`."""

from hdvit_lib.cli import main

if __name__ == "__main__":
    main()
