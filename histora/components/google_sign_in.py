"""Google sign-in through the Firebase JS SDK, bundled with the page (no CDN).

The page defines `window.historaGoogleSignIn(config)`; the sign-in state calls it with
`rx.call_script` and receives `{idToken}` or `{error}` (a Firebase error code). The
Firebase session in the browser is closed straight away: Histora keeps its own tokens.
"""

from __future__ import annotations

import reflex as rx
from reflex.utils.imports import ImportDict, ImportVar

FIREBASE_JS = "firebase@13.2.0"
SIGN_IN_FUNCTION = "historaGoogleSignIn"

# A named app, so nothing else on the page that might use Firebase shares its state.
_SIGN_IN_CODE = f"""
async function {SIGN_IN_FUNCTION}(config) {{
  try {{
    const name = "histora-google-sign-in";
    const app = getApps().find((candidate) => candidate.name === name)
      ?? initializeApp(
        {{ apiKey: config.apiKey, authDomain: config.authDomain, projectId: config.projectId }},
        name,
      );
    const auth = getAuth(app);
    if (config.emulatorUrl && !auth.emulatorConfig) {{
      connectAuthEmulator(auth, config.emulatorUrl, {{ disableWarnings: true }});
    }}
    const provider = new GoogleAuthProvider();
    provider.setCustomParameters({{ prompt: "select_account" }});
    const result = await signInWithPopup(auth, provider);
    const idToken = await result.user.getIdToken();
    await signOut(auth);
    return {{ idToken }};
  }} catch (error) {{
    return {{ error: (error && error.code) || "unknown" }};
  }}
}}
if (typeof window !== "undefined") {{
  window.{SIGN_IN_FUNCTION} = {SIGN_IN_FUNCTION};
}}
"""


class FirebaseGoogleSignIn(rx.Fragment):
    """Renders nothing; brings the SDK and the sign-in function into the page."""

    def add_imports(self) -> ImportDict:
        return {
            FIREBASE_JS: [
                ImportVar(tag=tag, package_path="/app") for tag in ("initializeApp", "getApps")
            ]
            + [
                ImportVar(tag=tag, package_path="/auth")
                for tag in (
                    "getAuth",
                    "connectAuthEmulator",
                    "GoogleAuthProvider",
                    "signInWithPopup",
                    "signOut",
                )
            ]
        }

    def add_custom_code(self) -> list[str]:
        return [_SIGN_IN_CODE]


def google_sign_in_script(browser_config_json: str) -> str:
    """The call that starts the popup; the config is JSON, so it is a JS literal too."""
    return f"window.{SIGN_IN_FUNCTION}({browser_config_json})"
