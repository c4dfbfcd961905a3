// Built into the Python package, so an installed `mf serve` needs no Node.js at run time.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "../metaforge/serve/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
});
