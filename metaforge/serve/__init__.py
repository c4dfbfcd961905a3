"""`mf serve`: the twin over HTTP and WebSocket, and the dashboard (projections only, no domain logic).

Every answer comes from a library call (thread/queries, thread/devices, serve/overlay, ...); this
package only routes, checks who may ask, follows the stores for live pushes and serves files.
FastAPI and uvicorn are imported only here, so the rest of `mf` starts without them.
"""
