"""Thumbnails from the providers' renditions, in the freedesktop thumbnail cache, so that a
file manager draws a folder of pictures without reading a single original: `standard`
names and writes them as the Thumbnail Managing Standard says, `filler` makes them for the
directories a mounted filesystem lists, `assetfs thumbnails` makes them ahead."""
