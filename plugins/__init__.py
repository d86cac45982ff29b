"""First-party dialect plugins, installed as ``ds2proxy_plugins``.

Each sub-package is registered under the ``ds2proxy.plugins`` entry-point
group in setup.cfg, exactly as a third-party plugin would be.
"""
