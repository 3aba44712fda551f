"""``python -m aad.data.synthetic``: see :func:`aad.data.synthetic.main`."""

from aad.data.synthetic import main

main()
