"""pre-delete hook: deletes the release's TaskWorkerPools and waits until they are gone.

The operator removes each pool's finalizer once the pool is deleted; it must still be running, so Helm runs
this before it deletes the operator. Arguments: the timeout in seconds, then NAMESPACE/NAME of each pool.
"""

import sys
import time

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "taskpool.dev", "v1alpha1", "taskworkerpools"


def exists(api, namespace, name):
    try:
        api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _request_timeout=10)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def main():
    config.load_incluster_config()
    api = client.CustomObjectsApi()
    timeout = float(sys.argv[1])
    pools = [tuple(arg.split("/", 1)) for arg in sys.argv[2:]]
    for namespace, name in pools:
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _request_timeout=10)
            print(f"deleting TaskWorkerPool {namespace}/{name}", flush=True)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    remaining = pools
    while remaining:
        remaining = [pool for pool in remaining if exists(api, *pool)]
        if not remaining:
            break
        if time.monotonic() > deadline:
            names = ", ".join(f"{ns}/{name}" for ns, name in remaining)
            sys.exit(f"TaskWorkerPools still present after {timeout:g}s (is the operator running?): {names}")
        time.sleep(2)
    print(f"{len(pools)} TaskWorkerPools deleted", flush=True)


main()
