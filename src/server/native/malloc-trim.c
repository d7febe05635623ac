/*
 * A Node addon with one function, trim(): glibc's malloc_trim(0), which hands the free pages
 * inside malloc's arenas back to the kernel. glibc gives back only the free space at the top of
 * an arena by itself; what a burst (10,000 stars created, a reconnect storm) frees below memory
 * still in use stays in the process for good (docs/cluster.md, "Memory"). Returns whether any
 * memory was released.
 *
 * The few Node-API declarations it needs are written out (Node-API is a stable C ABI), so
 * building it needs a C compiler and nothing else: no node-gyp, no headers to download.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);

extern napi_status napi_create_function(napi_env env, const char *utf8name, size_t length, napi_callback cb, void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *utf8name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value *result);

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn = NULL;
  if (napi_create_function(env, "trim", 4, trim, NULL, &fn) == 0) napi_set_named_property(env, exports, "trim", fn);
  return exports;
}

/* The Node-API version it is written for (read by Node 22 and later; older ones assume 8). */
__attribute__((visibility("default"))) int node_api_module_get_api_version_v1(void) { return 8; }
