; Inno Setup 6 script: per-user installer for the Windows bundle that installer/build.py makes.
;   python installer\build.py
;   "%LOCALAPPDATA%\Programs\Inno Setup 6\ISCC.exe" installer\windows\llasa-studio.iss
; gives dist\llasa-studio-<version>-windows-x64-setup.exe (plus .bin slices for a CUDA bundle, see
; DiskSpanning). No administrator rights: installs under %LOCALAPPDATA%\Programs. The uninstaller
; removes the program and asks before deleting the user's data folder (voices, projects, logs), which
; is Qt's AppDataLocation for the app: %APPDATA%\<organization>\<application> (app/main.py names).
; tests/test_installer.py checks these names and the version against app/ and pyproject.toml.

#define AppName "Llasa Studio"
#define AppVersion "0.1.0"
#define AppExe "llasa-studio.exe"
#define DataOrg "LlasaStudio"
#define DataApp "Llasa Studio"
#ifndef BundleDir
  #define BundleDir AddBackslash(SourcePath) + "..\..\dist\llasa-studio"
#endif

[Setup]
AppId={{6F3C2A51-8C1E-4E7B-9D2A-4B1C7E5F0A93}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Llasa Studio
DefaultDirName={localappdata}\Programs\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#SourcePath}\..\..\dist
OutputBaseFilename=llasa-studio-{#AppVersion}-windows-x64-setup
SetupIconFile={#SourcePath}\..\..\resources\icons\llasa-studio.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
; The CUDA bundle is several GB: split into setup.exe + .bin slices instead of one oversized exe.
DiskSpanning=yes
DiskSliceSize=max
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
{ After the program is gone: offer to delete the user's data folder and settings too (default: keep).
  Downloaded models stay in the Hugging Face cache (%USERPROFILE%\.cache\huggingface), shared with
  other tools; a voices folder moved elsewhere in Preferences is not touched. }
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  DataDir: String;
begin
  if (CurUninstallStep <> usPostUninstall) or UninstallSilent then
    Exit;
  DataDir := ExpandConstant('{userappdata}\{#DataOrg}\{#DataApp}');
  if not DirExists(DataDir) then
    Exit;
  if MsgBox('Also delete your saved voices, projects, settings and logs?' + #13#10#13#10 + DataDir,
            mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES then
  begin
    DelTree(DataDir, True, True, True);
    RegDeleteKeyIncludingSubkeys(HKEY_CURRENT_USER, 'Software\{#DataOrg}\{#DataApp}');
  end;
end;
