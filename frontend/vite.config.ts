import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The gateway serves the build (services/gateway/static.py); GATEWAY_STATIC_DIR can point
// it elsewhere, SPE_UI_OUT_DIR builds elsewhere.
const outDir = process.env.SPE_UI_OUT_DIR || resolve(import.meta.dirname, "../services/gateway/static");

export default defineConfig({
  plugins: [react()],
  build: {
    outDir,
    emptyOutDir: true,
    // Hashed names under assets/: the gateway caches them for a year, index.html never.
    assetsDir: "assets",
    chunkSizeWarningLimit: 600,
  },
  server: {
    // `npm run dev` against a gateway on :8000 (make run).
    proxy: { "/api": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
