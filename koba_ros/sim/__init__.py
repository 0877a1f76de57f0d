"""The simulated picking cell (PyBullet): catalog, world, scenes, camera, arm."""
