"""Tests of OSC, OSCQuery and control: the router, the UDP server, scheduled bundles, the patches."""
