"""assetfs: digital-asset-management APIs mounted as a drive."""

__version__ = "0.1.0"
