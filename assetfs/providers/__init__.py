"""Provider clients: each turns one API into directory entries; none knows about FUSE."""
