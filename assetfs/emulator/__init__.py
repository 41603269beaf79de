"""A local server speaking the four providers' APIs, for the demo and the tests.

One module per provider; the shared pieces (tokens, blobs, content serving, faults,
sample content) each live in a module of their own.
"""

from ..extras import require

require("emulator")
