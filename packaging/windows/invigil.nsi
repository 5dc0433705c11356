; The Invigil agent's Windows installer: a per-user install that needs no administrator rights.
; pynsist renders this template (Jinja with square-bracket delimiters) with the files it prepared:
; scripts/build_agent_windows.py drives it. The uninstaller removes every file the installer placed and the
; agent's state under %LOCALAPPDATA%\Invigil.

!define PRODUCT_NAME "[[ib.appname]]"
!define PRODUCT_VERSION "[[ib.version]]"
!define INSTALLER_NAME "[[ib.installer_name]]"
!define PRODUCT_ICON "[[icon]]"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${PRODUCT_NAME}"

Target amd64-unicode  ; a 64-bit installer: the Python inside is 64-bit, and Wine may lack its 32-bit half
SetCompressor /SOLID lzma
Unicode true
ManifestDPIAware true
RequestExecutionLevel user

!include "MUI2.nsh"
!define MUI_ICON "[[icon]]"
!define MUI_UNICON "[[icon]]"
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"
!insertmacro MUI_LANGUAGE "Dutch"

Name "${PRODUCT_NAME} ${PRODUCT_VERSION}"
OutFile "${INSTALLER_NAME}"
InstallDir "$LOCALAPPDATA\Programs\${PRODUCT_NAME}"
ShowInstDetails show

Function .onInit
  SetShellVarContext current
FunctionEnd

Function un.onInit
  SetShellVarContext current
FunctionEnd

Section "!${PRODUCT_NAME}" sec_app
  SectionIn RO
  SetOutPath "$INSTDIR"
  File ${PRODUCT_ICON}
  SetOutPath "$INSTDIR\pkgs"
  File /r "pkgs\*.*"
[% for destination, group in grouped_files %]
  SetOutPath "[[destination]]"
  [% for file in group %]
  File "[[ file ]]"
  [% endfor %]
[% endfor %]
[% for dir, destination in ib.install_dirs %]
  SetOutPath "[[ pjoin(destination, dir) ]]"
  File /r "[[dir]]\*.*"
[% endfor %]

  ; Shortcuts start in the user's profile; the agent keeps its state under %LOCALAPPDATA%\Invigil.
  SetOutPath "$PROFILE"
  CreateDirectory "$SMPROGRAMS\${PRODUCT_NAME}"
[% for scname, sc in ib.shortcuts.items() %]
  CreateShortCut "$SMPROGRAMS\${PRODUCT_NAME}\[[scname]].lnk" "[[sc['target'] ]]" \
    '[[ sc['parameters'] ]]' "$INSTDIR\[[ sc['icon'] ]]"
[% endfor %]
  SetOutPath "$INSTDIR"

  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${PRODUCT_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${PRODUCT_VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "[[ib.publisher]]"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${PRODUCT_ICON}"
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  ; Python writes __pycache__ folders next to the modules it runs: the folders go whole.
  RMDir /r "$INSTDIR\pkgs"
[% for dir, destination in ib.install_dirs %]
  RMDir /r "[[pjoin(destination, dir)]]"
[% endfor %]
[% for file, destination in ib.install_files %]
  Delete "[[pjoin(destination, file)]]"
[% endfor %]
  Delete "$INSTDIR\${PRODUCT_ICON}"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  RMDir "$LOCALAPPDATA\Programs"  ; only when nothing else is installed there
  RMDir /r "$SMPROGRAMS\${PRODUCT_NAME}"
  ; What an agent that crashed left behind (sealed: its key died with it).
  RMDir /r "$LOCALAPPDATA\${PRODUCT_NAME}"
  ; pynsist's launchers write a traceback there when the agent itself crashed.
[% for scname, sc in ib.shortcuts.items() %]
  Delete "$APPDATA\[[ sc['script'] ]].log"
[% endfor %]
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
