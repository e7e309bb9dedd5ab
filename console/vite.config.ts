import { defineConfig } from "vite";

// One script and one stylesheet with fixed names, into the Python package (no Node at run time).
export default defineConfig({
  build: {
    outDir: "../src/shipmate/server/ui/static",
    emptyOutDir: true,
    sourcemap: false,
    rollupOptions: {
      input: "src/main.ts",
      output: { entryFileNames: "console.js", assetFileNames: "console[extname]", chunkFileNames: "console-[name].js" },
    },
  },
});
