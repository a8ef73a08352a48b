"""Tests of the activation streams: the hub, packing, WebSocket and the patches that read them."""
