// crd-check validates KeyVirt's generated CRDs and objects with kube-apiserver's own
// code (k8s.io/apiextensions-apiserver at the pinned Kubernetes version): each CRD as
// the API server does on create (structural schema, CEL compilation, CEL cost
// budget, defaults against their rules), then each object as on create (defaulting,
// OpenAPI schema, list-map keys, CEL rules). It prints one JSON report on stdout.
//
// Usage: crd-check <crd-dir> <object.yaml | --update=<old.yaml>,<new.yaml>>...
// An --update pair is validated as an update of the first object to the second, so
// that transition rules (oldSelf) run.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

type fieldError struct {
	Field  string `json:"field"`
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Error  string `json:"error"`
}

type crdReport struct {
	Name   string       `json:"name"`
	Errors []fieldError `json:"errors"`
}

type objectReport struct {
	File   string       `json:"file"`
	Errors []fieldError `json:"errors"`
}

type report struct {
	CRDs    []crdReport    `json:"crds"`
	Objects []objectReport `json:"objects"`
}

type kindSchema struct {
	internal   *apiextensions.JSONSchemaProps
	structural *structuralschema.Structural
}

func toFieldErrors(errs field.ErrorList) []fieldError {
	out := []fieldError{}
	for _, e := range errs {
		out = append(out, fieldError{Field: e.Field, Type: string(e.Type), Detail: e.Detail, Error: e.Error()})
	}
	return out
}

func loadCRD(path string) (*apiextensions.CustomResourceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v1crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &v1crd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1crd)
	var crd apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &crd, nil
}

func schemaOf(crd *apiextensions.CustomResourceDefinition) *apiextensions.JSONSchemaProps {
	if crd.Spec.Validation != nil {
		return crd.Spec.Validation.OpenAPIV3Schema
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

func readObject(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var obj map[string]interface{}
	// Like the API server's decoder: integers stay int64.
	if err := utiljson.Unmarshal(jsonData, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func validateObject(arg string, schemas map[string]kindSchema) ([]fieldError, error) {
	path, oldPath, isUpdate := arg, "", false
	if pair, ok := strings.CutPrefix(arg, "--update="); ok {
		oldPath, path, isUpdate = strings.Cut(pair, ",")
	}
	obj, err := readObject(path)
	if err != nil {
		return nil, err
	}
	kind, _ := obj["kind"].(string)
	ks, ok := schemas[kind]
	if !ok {
		return nil, fmt.Errorf("%s: no CRD for kind %q", path, kind)
	}
	structuraldefaulting.Default(obj, ks.structural)
	var oldObj interface{}
	if isUpdate {
		old, err := readObject(oldPath)
		if err != nil {
			return nil, err
		}
		structuraldefaulting.Default(old, ks.structural)
		oldObj = old
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(ks.internal)
	if err != nil {
		return nil, err
	}
	errs := apiservervalidation.ValidateCustomResource(nil, obj, validator)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, ks.structural, obj)...)
	celErrs, _ := cel.NewValidator(ks.structural, true, celconfig.PerCallLimit).Validate(context.Background(), nil, ks.structural, obj, oldObj, celconfig.RuntimeCELCostBudget)
	errs = append(errs, celErrs...)
	return toFieldErrors(errs), nil
}

func run(crdDir string, objects []string) (report, error) {
	rep := report{CRDs: []crdReport{}, Objects: []objectReport{}}
	schemas := map[string]kindSchema{}
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil {
		return rep, err
	}
	for _, f := range files {
		crd, err := loadCRD(f)
		if err != nil {
			return rep, err
		}
		errs := validation.ValidateCustomResourceDefinition(context.Background(), crd)
		rep.CRDs = append(rep.CRDs, crdReport{Name: crd.Name, Errors: toFieldErrors(errs)})
		s, err := structuralschema.NewStructural(schemaOf(crd))
		if err != nil {
			return rep, fmt.Errorf("%s: %w", crd.Name, err)
		}
		schemas[crd.Spec.Names.Kind] = kindSchema{internal: schemaOf(crd), structural: s}
	}
	for _, f := range objects {
		errs, err := validateObject(f, schemas)
		if err != nil {
			return rep, err
		}
		rep.Objects = append(rep.Objects, objectReport{File: f, Errors: errs})
	}
	return rep, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crd-check <crd-dir> <object.yaml>...")
		os.Exit(2)
	}
	rep, err := run(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "crd-check:", strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
}
