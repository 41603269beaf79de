"""The view: the directories and names a user sees, over the providers' listings and the
files held locally. It knows nothing of how files are written (write/ sets a node's `local`
and a directory's local names; the view only shows them)."""
