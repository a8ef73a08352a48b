"""The worker: the process that dreams loops through the ear, and its supervisor.

- :mod:`earengine.worker.process`: what runs in the spawned process (torch, the ear, the
  :class:`~earengine.optvis.dream.Dreamer`);
- :mod:`earengine.worker.supervisor`: the engine's side, which imports no torch: it starts the
  process, feeds it the registry's changes, hands each new loop to the player and restarts the
  process when it crashes, hangs or diverges;
- :mod:`earengine.worker.messages`: what goes over the two queues between them, one frozen
  dataclass per kind of message;
- :mod:`earengine.worker.loops`: the newest loop and its statistics in shared memory.
"""
