// instance_to_semantic.ijm - instance labels -> semantic labels 0 background / 1 inner / 2 edge.
//
// Part of rescale4dl_bmz. Same rule as rescale4dl_bmz.data.labels.instance_to_semantic, pixel for pixel.
//
// style=deepbacs (default): the DeepBacs / MorphoLibJ "Label Boundaries" rule. A pixel is an
//   edge when its RIGHT or its LOWER neighbour carries a different label; no pixel of the last
//   row or of the last column is ever an edge (MorphoLibJ loops over x < width-1, y < height-1).
//   Then inner = label > 0 and not edge -> 1, edge -> 2 (edge wins, background pixels included).
//   The edge is 1 px wide: outside an object on its top/left sides, inside on its bottom/right.
// style=inner: symmetric rim inside each object: an object pixel with a 4-neighbour of another
//   label (or background) is an edge; the image border does not make edges.
//
// Core ImageJ 1.x commands only (plain ImageJ has no MorphoLibJ): the label image is converted to
// 32-bit (exact for labels up to 2^24 = 16777216), shifted by one pixel with Translate, and the
// Image Calculator "Difference" is non-zero exactly where the neighbour differs. Add
// boundaries=morpholibj to use MorphoLibJ's "Label Boundaries" instead (style=deepbacs, Fiji
// with MorphoLibJ installed).
//
// Use:
//   - no argument: works on the active image, opens the result as "<title>-semantic";
//   - argument "input=<file or folder>\noutput=<file or folder>\nstyle=deepbacs" (one key=value
//     per line; a folder converts every .tif/.tiff/.png in it to <output>/<name>.tif).
//   From a shell: ImageJ -batch instance_to_semantic.ijm "input=...\noutput=..." (or ';' between
//   the key=value pairs instead of newlines when the paths hold no ';').
// Errors end the macro with exit("...") naming the file; the result is only saved on success.

requires("1.52a");

var STYLE = "deepbacs";
var BOUNDARIES = "core";
var MAX_EXACT = 16777216;

main(getArgument());

function main(argument) {
	input = argValue(argument, "input", "");
	output = argValue(argument, "output", "");
	STYLE = argValue(argument, "style", "deepbacs");
	BOUNDARIES = argValue(argument, "boundaries", "core");
	if (STYLE != "deepbacs" && STYLE != "inner")
		exit("instance_to_semantic: unknown style '" + STYLE + "' (deepbacs or inner)");
	if (BOUNDARIES != "core" && BOUNDARIES != "morpholibj")
		exit("instance_to_semantic: unknown boundaries '" + BOUNDARIES + "' (core or morpholibj)");
	if (BOUNDARIES == "morpholibj") {
		if (STYLE != "deepbacs")
			exit("instance_to_semantic: boundaries=morpholibj only applies to style=deepbacs");
		List.setCommands;
		if (List.get("Label Boundaries") == "")
			exit("instance_to_semantic: MorphoLibJ's 'Label Boundaries' is not installed; use boundaries=core");
	}
	if (input == "") {
		if (nImages == 0)
			exit("instance_to_semantic: no image open and no input= given");
		title = getTitle();
		setBatchMode(true);
		result = semantic(getImageID(), title);
		selectImage(result);
		dot = lastIndexOf(title, ".");
		if (dot > 0)
			title = substring(title, 0, dot);
		rename(title + "-semantic");
		setBatchMode("exit and display");
		return;
	}
	if (output == "")
		exit("instance_to_semantic: input= given without output=");
	if (!File.exists(input))
		exit("instance_to_semantic: input not found: " + input);
	setBatchMode(true);
	if (File.isDirectory(input)) {
		if (!File.isDirectory(output))
			File.makeDirectory(output);
		if (!File.isDirectory(output))
			exit("instance_to_semantic: cannot create output folder " + output);
		files = getFileList(input);
		count = 0;
		for (i = 0; i < files.length; i++) {
			name = files[i];
			lower = toLowerCase(name);
			if (startsWith(name, ".") || !(endsWith(lower, ".tif") || endsWith(lower, ".tiff") || endsWith(lower, ".png")))
				continue;
			dot = lastIndexOf(name, ".");
			convertFile(input + File.separator + name, output + File.separator + substring(name, 0, dot) + ".tif");
			count++;
		}
		if (count == 0)
			exit("instance_to_semantic: no .tif/.tiff/.png images in " + input);
	} else {
		convertFile(input, output);
	}
	setBatchMode(false);
}

// One file in, one 8-bit 0/1/2 TIFF out (calibration kept).
function convertFile(path, outPath) {
	before = nImages;
	open(path);
	if (nImages == before)
		exit("instance_to_semantic: cannot open " + path);
	source = getImageID();
	result = semantic(source, path);
	selectImage(source);
	close();
	selectImage(result);
	saveAs("Tiff", outPath);
	close();
}

// The semantic image (a new 8-bit image) of the label image `source`; `name` is for messages.
function semantic(source, name) {
	selectImage(source);
	if (nSlices > 1)
		exit("instance_to_semantic: " + name + " is a stack of " + nSlices + " slices; a label image must be 2D");
	if (bitDepth() == 24)
		exit("instance_to_semantic: " + name + " is an RGB image; a label image must be 8-, 16- or 32-bit");
	w = getWidth();
	h = getHeight();
	run("Select None");
	run("Duplicate...", "title=labels32");
	run("32-bit");
	labels = getImageID();
	getStatistics(area, mean, lowest, highest);
	if (lowest < 0)
		exit("instance_to_semantic: " + name + " has negative labels (min " + lowest + ")");
	if (highest > MAX_EXACT)
		exit("instance_to_semantic: " + name + " has labels above " + MAX_EXACT + ", which 32-bit float images do not hold exactly");

	if (BOUNDARIES == "morpholibj") {
		selectImage(source);
		run("Label Boundaries");
		edge = getImageID();
		run("32-bit");
		run("Max...", "value=1"); // 255 -> 1
	} else {
		edge = neighbourDifference(labels, -1, 0, w - 1, 0, 1, h); // right neighbour; not the last column
		lower = neighbourDifference(labels, 0, -1, 0, h - 1, w, 1); // lower neighbour; not the last row
		imageCalculator("Add", edge, lower);
		closeImage(lower);
		if (STYLE == "deepbacs") {
			// MorphoLibJ's loops stop at width-1 and height-1: no pixel of the last column or
			// of the last row is an edge, even where its lower/right neighbour differs.
			selectImage(edge);
			makeRectangle(w - 1, 0, 1, h);
			run("Set...", "value=0");
			makeRectangle(0, h - 1, w, 1);
			run("Set...", "value=0");
			run("Select None");
		}
		if (STYLE == "inner") {
			left = neighbourDifference(labels, 1, 0, 0, 0, 1, h); // left neighbour; not the first column
			imageCalculator("Add", edge, left);
			closeImage(left);
			upper = neighbourDifference(labels, 0, 1, 0, 0, w, 1); // upper neighbour; not the first row
			imageCalculator("Add", edge, upper);
			closeImage(upper);
		}
		selectImage(edge);
		run("Max...", "value=1"); // ImageJ's "Max..." clips from above: any difference -> 1
	}
	// Foreground 0/1 (labels are whole numbers >= 0).
	selectImage(labels);
	run("Max...", "value=1");
	if (STYLE == "inner")
		imageCalculator("Multiply", edge, labels); // the rim lies inside objects only
	selectImage(edge);
	run("Multiply...", "value=2");
	imageCalculator("Max", labels, edge); // edge (2) wins over inner (1) and background (0)
	closeImage(edge);
	selectImage(labels);
	setMinAndMax(0, 255); // 0..255 maps to itself whether or not conversions scale
	run("8-bit");
	return labels;
}

// A new 32-bit image, |label - label of the neighbour at (-dx, -dy)|, zero in the rectangle
// (x, y, width, height) where that neighbour lies outside the image.
function neighbourDifference(labels, dx, dy, x, y, width, height) {
	selectImage(labels);
	run("Duplicate...", "title=shifted");
	shifted = getImageID();
	run("Translate...", "x=" + dx + " y=" + dy + " interpolation=None");
	imageCalculator("Difference create 32-bit", labels, shifted);
	difference = getImageID();
	closeImage(shifted);
	selectImage(difference);
	makeRectangle(x, y, width, height);
	run("Set...", "value=0");
	run("Select None");
	return difference;
}

function closeImage(id) {
	selectImage(id);
	close();
}

// The value of key in "key=value" lines (or ';'-separated pairs); default when absent.
function argValue(argument, key, fallback) {
	lines = split(argument, "\n");
	if (lines.length == 1 && indexOf(argument, "\n") < 0 && indexOf(argument, ";") >= 0)
		lines = split(argument, ";");
	for (i = 0; i < lines.length; i++) {
		line = replace(lines[i], "^\\s+|\\s+$", "");
		if (startsWith(line, key + "="))
			return substring(line, lengthOf(key) + 1);
	}
	return fallback;
}
