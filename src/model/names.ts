/** Names' shapes, dependency-free so the CLI can check them without the spec's schema. */

/** A port's name: it becomes PORT_<NAME> in the star's environment. */
export const PORT_NAME = /^[a-z][a-z0-9-]{0,14}$/;

/** The environment variable a named port is given in: http → PORT_HTTP, admin-api → PORT_ADMIN_API. */
export function portEnvName(name: string): string {
  return `PORT_${name.toUpperCase().replaceAll("-", "_")}`;
}
