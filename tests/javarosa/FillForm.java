// FillForm: fill an XForm with JavaRosa (the form engine inside ODK Collect) and print the
// submission XML exactly as Collect serializes it.
//
//   java -cp .tools/javarosa:.tools/ODK_Validate.jar FillForm FORM.xml ANSWERS.txt
//   java -cp .tools/javarosa:.tools/ODK_Validate.jar FillForm FORM.xml ANSWERS.txt --edit OLD.xml
//
// ANSWERS.txt: one answer per line, `/data/path/to/question=value`; blank lines and lines starting
// with '#' are ignored. Repeat instances are addressed 1-based, `/data/members[2]/member_name=Lan`
// (a step without [n] means [1]); repeat instances are created as needed. Values are in XForm
// string form: geopoint "lat lon alt acc", geotrace/geoshape points joined by ';', select_multiple
// space-separated choice names, image/audio/file = a bare file name, date "YYYY-MM-DD". An empty
// value clears the question.
//
// New form (as Collect's FormLoaderTask does): parse, formDef.initialize(true, ...) so preloads
// (start, today, deviceid, meta/instanceID = uuid:...), calculates and odk-instance-first-load
// actions run. Edit (--edit, as Collect does when editing a finalized form): parse, import the old
// instance into the form, formDef.initialize(false, ...); on finalization meta/deprecatedID gets the
// old instanceID and meta/instanceID a new uuid:... (Collect's EditedFormFinalizationProcessor).
//
// Answers are given by walking the form from start to end with FormEntryController, the way a
// collector swipes through it: questions that are not relevant when reached cannot be answered.
// Then, as Collect does when the collector finalizes: validate the whole form (required questions,
// constraints), finalizeFormEntry() (sets `end`, runs finalization processors) and serialize the
// submission with XFormSerializingVisitor (non-relevant nodes left out).
//
// Form media (CSV lists for select_one_from_file, images, ...) are read from the folder that holds
// FORM.xml, as Collect reads them from the form's media folder: `jr://file-csv/hamlets.csv` is
// FORM.xml's sibling `hamlets.csv`. As in JavaRosa, a missing list file is an empty list.
//
// Environment (optional):
//   FILLFORM_LOCATION  "lat lon alt acc" given to odk:setgeopoint actions (start-geopoint); unset =
//                      no location fix, the field stays empty (Collect with location off).
//   FILLFORM_DEVICE_ID deviceid property (default "collect:FillFormHarness1").
//   FILLFORM_USERNAME  username property (default unset).
//
// Output: the submission XML bytes on stdout. Errors: a message on stderr and exit status 1
// (form does not load, answer rejected or unused, form not valid for finalization); 2 = bad usage.

import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.javarosa.core.model.Constants;
import org.javarosa.core.model.FormDef;
import org.javarosa.core.model.FormIndex;
import org.javarosa.core.model.IDataReference;
import org.javarosa.core.model.SelectChoice;
import org.javarosa.core.model.SubmissionProfile;
import org.javarosa.core.model.ValidateOutcome;
import org.javarosa.core.model.actions.setgeopoint.SetGeopointAction;
import org.javarosa.core.model.actions.setgeopoint.SetGeopointActionHandler;
import org.javarosa.core.model.data.AnswerDataFactory;
import org.javarosa.core.model.data.IAnswerData;
import org.javarosa.core.model.data.SelectMultiData;
import org.javarosa.core.model.data.SelectOneData;
import org.javarosa.core.model.data.StringData;
import org.javarosa.core.model.data.UncastData;
import org.javarosa.core.model.data.helper.Selection;
import org.javarosa.core.model.instance.InstanceInitializationFactory;
import org.javarosa.core.model.instance.TreeElement;
import org.javarosa.core.model.instance.TreeReference;
import org.javarosa.core.reference.PrefixedRootFactory;
import org.javarosa.core.reference.Reference;
import org.javarosa.core.reference.ReferenceManager;
import org.javarosa.core.services.IPropertyManager;
import org.javarosa.core.services.PropertyManager;
import org.javarosa.core.services.properties.IPropertyRules;
import org.javarosa.core.services.transport.payload.ByteArrayPayload;
import org.javarosa.core.util.PropertyUtils;
import org.javarosa.form.api.FormEntryController;
import org.javarosa.form.api.FormEntryFinalizationProcessor;
import org.javarosa.form.api.FormEntryModel;
import org.javarosa.form.api.FormEntryPrompt;
import org.javarosa.model.xform.XFormSerializingVisitor;
import org.javarosa.model.xform.XFormsModule;
import org.javarosa.model.xform.XPathReference;
import org.javarosa.xform.parse.XFormParser;
import org.javarosa.xform.util.XFormUtils;

public class FillForm {

    /** A failure reported to the caller as "FillForm: message" with exit status 1. */
    static class Failure extends RuntimeException {
        private static final long serialVersionUID = 1L;
        Failure(String message) { super(message); }
    }

    public static void main(String[] args) {
        String formPath, answersPath, editPath = null;
        if (args.length == 2) {
            formPath = args[0];
            answersPath = args[1];
        } else if (args.length == 4 && args[2].equals("--edit")) {
            formPath = args[0];
            answersPath = args[1];
            editPath = args[3];
        } else {
            System.err.println("usage: FillForm FORM.xml ANSWERS.txt [--edit EXISTING_INSTANCE.xml]");
            System.exit(2);
            return;
        }
        try {
            byte[] xml = fill(formPath, answersPath, editPath);
            System.out.write(xml);
            System.out.flush();
        } catch (Failure e) {
            System.err.println("FillForm: " + e.getMessage());
            System.exit(1);
        } catch (Exception e) {
            System.err.println("FillForm: unexpected error: " + e);
            e.printStackTrace();
            System.exit(1);
        }
    }

    static byte[] fill(String formPath, String answersPath, String editPath) throws Exception {
        Map<String, Answer> answers = readAnswers(answersPath);
        setUpJavaRosa(new File(formPath).getAbsoluteFile().getParentFile());

        // --- Load the form, as Collect's FormLoaderTask does.
        FormDef formDef;
        try {
            formDef = XFormUtils.getFormFromInputStream(new ByteArrayInputStream(readBytes(formPath)));
        } catch (Exception e) {
            throw new Failure("form " + formPath + " does not load: " + e.getMessage());
        }
        if (formDef == null) {
            throw new Failure("form " + formPath + " does not load");
        }
        FormEntryController fec = new FormEntryController(new FormEntryModel(formDef));
        if (editPath != null) {
            // Order matters (as in Collect): import the saved data, then initialize(false) so
            // preloads are NOT re-run and the old instanceID/start are kept.
            importInstance(readBytes(editPath), fec);
            formDef.initialize(false, new InstanceInitializationFactory());
            fec.addPostProcessor(new EditedFormFinalization());
        } else {
            formDef.initialize(true, new InstanceInitializationFactory());
        }

        // --- Fill in the answers, walking the form like a collector.
        fillAnswers(fec, answers);

        // --- Finalize, as Collect does when "Finalize" is tapped.
        ValidateOutcome outcome = formDef.validate(); // as Collect's validateAnswers()
        if (outcome != null) {
            String ref = outcome.failedPrompt.getReference().toString();
            if (outcome.outcome == FormEntryController.ANSWER_REQUIRED_BUT_EMPTY) {
                throw new Failure("cannot finalize: required question " + ref + " has no answer");
            }
            throw new Failure("cannot finalize: constraint violated at " + ref
                    + " (outcome " + outcome.outcome + ")");
        }
        fec.finalizeFormEntry();

        // --- Serialize the submission (Collect's JavaRosaFormController.getSubmissionXml()).
        XFormSerializingVisitor serializer = new XFormSerializingVisitor();
        ByteArrayPayload payload = (ByteArrayPayload) serializer.createSerializedPayload(
                formDef.getInstance(), submissionRef(formDef));
        return payload.getPayloadBytes();
    }

    // ------------------------------------------------------------------------------------------
    // JavaRosa set-up (Collect's JavaRosaInitializer, without Android).

    static void setUpJavaRosa(File mediaDir) {
        PropertyManager.setPropertyManager(new HarnessPropertyManager());
        // Collect resolves jr://file/ and jr://file-csv/ (external instances, select_one_from_file)
        // to the form's media folder; here that is the folder of the form file.
        ReferenceManager.instance().addReferenceFactory(new PrefixedRootFactory(new String[] {"jr://file-csv/", "jr://file/"}) {
            @Override
            protected Reference factory(String terminal, String uri) {
                return new MediaFileReference(new File(mediaDir, terminal), uri);
            }
        });
        new XFormsModule().registerModule();
        // odk:setgeopoint (pyxform's start-geopoint) needs a client-side handler; without one the
        // action is not understood. Ours writes FILLFORM_LOCATION, if set, immediately.
        XFormParser.registerActionHandler(SetGeopointActionHandler.ELEMENT_NAME, new SetGeopointActionHandler() {
            @Override
            public SetGeopointAction getSetGeopointAction() {
                return new HarnessSetGeopointAction(null);
            }
        });
    }

    /** A read-only form media file (Collect's FileReference). */
    static class MediaFileReference implements Reference {
        private final File file;
        private final String uri;

        MediaFileReference(File file, String uri) {
            this.file = file;
            this.uri = uri;
        }

        @Override public boolean doesBinaryExist() { return file.isFile(); }
        @Override public InputStream getStream() throws IOException { return new FileInputStream(file); }
        @Override public String getURI() { return uri; }
        @Override public String getLocalURI() { return file.getAbsolutePath(); }
        @Override public boolean isReadOnly() { return true; }
        @Override public OutputStream getOutputStream() throws IOException {
            throw new IOException("form media are read-only");
        }
        @Override public void remove() throws IOException {
            throw new IOException("form media are read-only");
        }
        @Override public Reference[] probeAlternativeReferences() { return new Reference[0]; }
    }

    /** Device properties for jr:preload="property" (deviceid, username, ...), like Collect's. */
    static class HarnessPropertyManager implements IPropertyManager {
        private final Map<String, String> props = new LinkedHashMap<>();

        HarnessPropertyManager() {
            put("deviceid", "", envOr("FILLFORM_DEVICE_ID", "collect:FillFormHarness1"));
            put("username", "username", System.getenv("FILLFORM_USERNAME"));
        }

        private void put(String name, String scheme, String value) {
            if (value != null && !value.isBlank()) {
                props.put(name, value);
                props.put("uri:" + name, scheme + ":" + value);
            }
        }

        @Override public String getSingularProperty(String name) {
            return props.getOrDefault(name.toLowerCase(), "");
        }
        @Override public List<String> getProperty(String name) { return Collections.emptyList(); }
        @Override public void setProperty(String name, String value) { }
        @Override public void setProperty(String name, List<String> value) { }
        @Override public void addRules(IPropertyRules rules) { }
        @Override public List<IPropertyRules> getRules() { return Collections.emptyList(); }
    }

    /** odk:setgeopoint: Collect asks the GPS; we use FILLFORM_LOCATION or leave the field empty. */
    public static class HarnessSetGeopointAction extends SetGeopointAction {
        public HarnessSetGeopointAction() { }                      // for JavaRosa serialization
        HarnessSetGeopointAction(TreeReference target) { super(target); } // sets the action name

        @Override
        public void requestLocationUpdates() {
            String location = System.getenv("FILLFORM_LOCATION");
            if (location != null && !location.isBlank()) {
                saveLocationValue(location.trim());
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Edit mode.

    /** Loads a saved instance into the form (Collect's FormLoaderTask.importData). */
    static void importInstance(byte[] instanceXml, FormEntryController fec) {
        FormDef formDef = fec.getModel().getForm();
        TreeElement savedRoot;
        try {
            savedRoot = XFormParser.restoreDataModel(instanceXml, null).getRoot();
        } catch (Exception e) {
            throw new Failure("existing instance does not parse: " + e.getMessage());
        }
        TreeElement templateRoot = formDef.getInstance().getRoot().deepCopy(true);
        // Collect's "weak check for matching forms" (Collect only logs; we fail).
        if (!savedRoot.getName().equals(templateRoot.getName()) || savedRoot.getMult() != 0) {
            throw new Failure("existing instance root <" + savedRoot.getName()
                    + "> does not match the form's <" + templateRoot.getName() + ">");
        }
        templateRoot.populate(savedRoot, formDef);
        // Collect: the main instance must have no name; set before setRoot (which names the root).
        formDef.getInstance().setName(null);
        formDef.getInstance().setRoot(templateRoot);
        if (fec.getModel().getLanguages() != null) {
            formDef.localeChanged(fec.getModel().getLanguage(), formDef.getLocalizer());
        }
    }

    /** Collect's EditedFormFinalizationProcessor: old instanceID -> deprecatedID, new instanceID. */
    static class EditedFormFinalization implements FormEntryFinalizationProcessor {
        @Override
        public void processForm(FormEntryModel model) {
            TreeElement meta = model.getForm().getMainInstance().getRoot().getFirstChild("meta");
            TreeElement instanceId = meta == null ? null : meta.getFirstChild("instanceID");
            if (instanceId == null) {
                throw new Failure("edit: the form has no meta/instanceID");
            }
            TreeElement deprecatedId = new TreeElement("deprecatedID");
            meta.addChild(deprecatedId);
            deprecatedId.setAnswer(instanceId.getValue());
            instanceId.setAnswer(new StringData("uuid:" + PropertyUtils.genUUID()));
        }
    }

    // ------------------------------------------------------------------------------------------
    // Answers.

    /** One line of ANSWERS.txt. */
    static class Answer {
        final String path;  // as written, for messages
        final String value;
        Answer(String path, String value) { this.path = path; this.value = value; }
    }

    /** Reads ANSWERS.txt into canonical path -> answer, keeping file order. */
    static Map<String, Answer> readAnswers(String path) throws IOException {
        Map<String, Answer> answers = new LinkedHashMap<>();
        String[] text = new String(readBytes(path), StandardCharsets.UTF_8).split("\n", -1);
        List<String> lines = java.util.Arrays.asList(text);
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i);
            if (line.endsWith("\r")) line = line.substring(0, line.length() - 1);
            if (line.isBlank() || line.trim().startsWith("#")) continue;
            int eq = line.indexOf('=');
            if (eq < 0) throw new Failure(path + ":" + (i + 1) + ": expected /path=value");
            String written = line.substring(0, eq).trim();
            String key = canonical(written, path + ":" + (i + 1));
            if (answers.containsKey(key)) throw new Failure(path + ":" + (i + 1) + ": duplicate answer for " + written);
            answers.put(key, new Answer(written, line.substring(eq + 1)));
        }
        return answers;
    }

    /** "/data/members[2]/member_name" -> "/data[1]/members[2]/member_name[1]". */
    static String canonical(String path, String where) {
        if (!path.startsWith("/") || path.length() < 2) throw new Failure(where + ": path must be absolute: " + path);
        StringBuilder sb = new StringBuilder();
        for (String step : path.substring(1).split("/", -1)) {
            String name = step;
            int index = 1;
            int br = step.indexOf('[');
            if (br >= 0) {
                if (!step.endsWith("]")) throw new Failure(where + ": bad step '" + step + "'");
                name = step.substring(0, br);
                try {
                    index = Integer.parseInt(step.substring(br + 1, step.length() - 1));
                } catch (NumberFormatException e) {
                    throw new Failure(where + ": bad index in '" + step + "'");
                }
                if (index < 1) throw new Failure(where + ": repeat indexes start at 1: '" + step + "'");
            }
            if (name.isEmpty()) throw new Failure(where + ": empty step in " + path);
            sb.append('/').append(name).append('[').append(index).append(']');
        }
        return sb.toString();
    }

    /** The same canonical form for a JavaRosa reference (multiplicities are 0-based). */
    static String canonical(TreeReference ref) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < ref.size(); i++) {
            int mult = ref.getMultiplicity(i);
            sb.append('/').append(ref.getName(i)).append('[').append(mult < 0 ? 1 : mult + 1).append(']');
        }
        return sb.toString();
    }

    /**
     * Steps through the form from beginning to end. Each question reached whose path has an answer
     * is answered; at each "add another repeat?" prompt a new instance is created when some answer
     * addresses it.
     */
    static void fillAnswers(FormEntryController fec, Map<String, Answer> answers) {
        Map<String, Answer> pending = new LinkedHashMap<>(answers);
        fec.jumpToIndex(FormIndex.createBeginningOfFormIndex());
        int event;
        while ((event = fec.stepToNextEvent()) != FormEntryController.EVENT_END_OF_FORM) {
            FormIndex index = fec.getModel().getFormIndex();
            if (event == FormEntryController.EVENT_PROMPT_NEW_REPEAT) {
                // The prompt's reference is the would-be next instance, e.g. /data[1]/members[2] when
                // one exists. Add it if an answer addresses it or a later instance of the same repeat
                // (so members[4] alone also creates an empty members[3], as a collector would have to).
                String next = canonical(index.getReference());
                String base = next.substring(0, next.lastIndexOf('[') + 1); // "/data[1]/members["
                int n = Integer.parseInt(next.substring(base.length(), next.length() - 1));
                boolean wanted = false;
                for (String key : pending.keySet()) {
                    if (key.startsWith(base)) {
                        int end = key.indexOf(']', base.length());
                        if (Integer.parseInt(key.substring(base.length(), end)) >= n) { wanted = true; break; }
                    }
                }
                if (wanted) {
                    fec.newRepeat(); // the model now points at the new instance; the next step enters it
                }
            } else if (event == FormEntryController.EVENT_QUESTION) {
                String key = canonical(index.getReference());
                Answer a = pending.remove(key);
                if (a != null) {
                    answer(fec, index, a.path, a.value);
                }
            }
        }
        if (!pending.isEmpty()) {
            List<String> unused = new ArrayList<>();
            for (Answer a : pending.values()) unused.add(a.path);
            throw new Failure("answers not used (no such question in the form's body, or not relevant"
                    + " when reached): " + unused);
        }
    }

    static void answer(FormEntryController fec, FormIndex index, String key, String value) {
        FormEntryPrompt prompt = fec.getModel().getQuestionPrompt(index);
        if (prompt.isReadOnly()) throw new Failure(key + " is read-only and cannot be answered");
        IAnswerData data = toAnswerData(prompt, key, value);
        int status = fec.answerQuestion(index, data, true); // what Collect's FormController does
        if (status == FormEntryController.ANSWER_CONSTRAINT_VIOLATED) {
            String msg = prompt.getConstraintText();
            throw new Failure("answer rejected for " + key + "=" + value + ": constraint violated"
                    + (msg != null ? " (" + msg + ")" : ""));
        }
        if (status == FormEntryController.ANSWER_REQUIRED_BUT_EMPTY) {
            throw new Failure("answer rejected for " + key + ": required but empty");
        }
        if (status != FormEntryController.ANSWER_OK) {
            throw new Failure("answer rejected for " + key + "=" + value + ": status " + status);
        }
    }

    /** Builds the answer object the matching Collect widget would produce. */
    static IAnswerData toAnswerData(FormEntryPrompt prompt, String key, String value) {
        if (value.isEmpty()) return null; // clears the answer
        int control = prompt.getControlType();
        int type = prompt.getDataType();
        if (control == Constants.CONTROL_SELECT_ONE) {
            return new SelectOneData(choice(prompt, key, value.trim()));
        }
        if (control == Constants.CONTROL_SELECT_MULTI) {
            List<Selection> selections = new ArrayList<>();
            for (String v : value.trim().split("\\s+")) selections.add(choice(prompt, key, v));
            return new SelectMultiData(selections);
        }
        // Collect's text, barcode and media widgets (image, audio, video, file) answer with StringData.
        if (type == Constants.DATATYPE_TEXT || type == Constants.DATATYPE_BARCODE
                || type == Constants.DATATYPE_BINARY) {
            return new StringData(value);
        }
        // Others: parse the XForm string form into the typed value (IntegerData, DateData,
        // GeoPointData, ...), as JavaRosa does for a value written into the instance.
        try {
            return AnswerDataFactory.templateByDataType(type).cast(new UncastData(value.trim()));
        } catch (RuntimeException e) {
            throw new Failure("answer rejected for " + key + "=" + value + ": not a valid value of this type ("
                    + e.getMessage() + ")");
        }
    }

    static Selection choice(FormEntryPrompt prompt, String key, String value) {
        List<SelectChoice> choices = prompt.getSelectChoices(); // includes itemset (dynamic) choices
        if (choices != null) {
            for (SelectChoice c : choices) {
                if (c.getValue().equals(value)) return c.selection();
            }
        }
        List<String> names = new ArrayList<>();
        if (choices != null) for (SelectChoice c : choices) names.add(c.getValue());
        throw new Failure("answer rejected for " + key + ": '" + value + "' is not a choice " + names);
    }

    // ------------------------------------------------------------------------------------------

    /** The submission's root: the form's <submission ref=...> if any, else the whole instance. */
    static IDataReference submissionRef(FormDef formDef) {
        SubmissionProfile p = formDef.getSubmissionProfile();
        return (p == null || p.getRef() == null) ? new XPathReference("/") : p.getRef();
    }

    static String envOr(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isBlank() ? dflt : v;
    }

    static byte[] readBytes(String path) throws IOException {
        try {
            return Files.readAllBytes(new File(path).toPath());
        } catch (IOException e) {
            throw new Failure("cannot read " + path + ": " + e.getClass().getSimpleName() + " " + e.getMessage());
        }
    }
}
