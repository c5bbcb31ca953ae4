"""lesionnet: self-configuring lesion tracking (TLT, DLT, affine) and detection by tracking on 3D CT."""

__version__ = "0.1.0"
