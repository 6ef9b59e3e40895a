"""The bridge's media: the WebRTC leg adapter, transcoding and the per-call pipeline."""
