"""Docker plugin: deployments as containers built from the prediction server image, behind one proxy.

``shipmate.plugins.docker.plugin:DockerPlugin`` is the plugin; ``config`` holds its
settings, ``decisions``/``naming``/``routes`` the pure logic, ``engine`` and
``proxy`` the I/O.
"""
